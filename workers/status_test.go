package workers

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// Each worker's status is its own: a respawned worker counts the respawns
// before it and says how the one it replaced ended; while the slot waits
// for its respawn, the dead worker is listed there, with its exit; a new
// generation's workers start afresh.
func TestStatusPerWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2, BackoffMin: time.Second, BackoffMax: 10 * time.Second})
		h.readyAll(1)
		time.Sleep(FirstGenerationGrace)
		dead := h.proc(1, 1)
		dead.exit("exit status 3")
		synctest.Wait()

		st := h.status()
		if len(st.Restarting) != 1 {
			t.Fatalf("restarting %+v, want slot 1 waiting for its respawn", st.Restarting)
		}
		r := st.Restarting[0]
		if r.Slot != 1 || r.Gen != 1 || r.PID != dead.w.pid || r.Exit != "exit status 3" || r.Restarts != 0 || r.Crashes != 1 || r.CrashLoop || !r.RespawnAt.After(r.ExitedAt) {
			t.Errorf("restarting slot %+v, want slot 1 of gen 1, pid %d, exit status 3, no restart before, one crash", r, dead.w.pid)
		}
		if len(st.Workers) != 1 || st.Workers[0].Slot != 0 || st.Workers[0].PrevExit != "" || st.Workers[0].Restarts != 0 {
			t.Errorf("workers %+v, want slot 0 alone, untouched", st.Workers)
		}

		time.Sleep(10 * time.Second) // past the back-off
		synctest.Wait()
		st = h.status()
		w := workerIn(t, st, 1, 1)
		if len(st.Restarting) != 0 || w.PID == dead.w.pid || w.Restarts != 1 || w.PrevExit != "exit status 3" || w.PrevExitAt.IsZero() {
			t.Errorf("after the respawn: restarting %+v, worker %+v; want a new pid, 1 restart, previous exit status 3", st.Restarting, w)
		}
		if s0 := workerIn(t, st, 1, 0); s0.Restarts != 0 || s0.PrevExit != "" {
			t.Errorf("slot 0 took slot 1's restart: %+v", s0)
		}

		// A second crash of the respawned worker: Restarts of the dead one
		// is 1, and the next worker's 2.
		h.proc(1, 1).exit("killed by signal killed")
		synctest.Wait()
		if st := h.status(); len(st.Restarting) != 1 || st.Restarting[0].Restarts != 1 || st.Restarting[0].Exit != "killed by signal killed" {
			t.Errorf("restarting %+v after the second crash", st.Restarting)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if w := workerIn(t, h.status(), 1, 1); w.Restarts != 2 || w.PrevExit != "killed by signal killed" {
			t.Errorf("after the second respawn: %+v", w)
		}

		// A reload: the new generation's workers have no past.
		h.p.Reload(Update{})
		synctest.Wait()
		h.readyAll(2)
		for slot := 0; slot < 2; slot++ {
			if w := workerIn(t, h.status(), 2, slot); w.Restarts != 0 || w.PrevExit != "" {
				t.Errorf("gen 2 slot %d: %+v, want no restart and no previous exit", slot, w)
			}
		}
		h.stop()
	})
}

// Slots given up name the worker that was the last straw: its generation,
// PID, exit and the restarts before it.
func TestStatusErroredSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1, MaxRestarts: 2, RestartWindow: time.Minute})
		h.readyAll(1)
		time.Sleep(FirstGenerationGrace)
		var last *fakeProc
		for round := 0; round < 3; round++ {
			last = h.proc(1, 0)
			last.exit("exit status 1")
			synctest.Wait()
			time.Sleep(DefaultBackoffMax)
			synctest.Wait()
		}
		st := h.status()
		if st.State != StateErrored || len(st.Errored) != 1 || len(st.Restarting) != 0 {
			t.Fatalf("status %+v, want errored, slot 0 given up", st)
		}
		e := st.Errored[0]
		if e.Slot != 0 || e.Gen != 1 || e.PID != last.w.pid || e.Exit != "exit status 1" || e.Restarts != 2 {
			t.Errorf("errored slot %+v, want gen 1 pid %d, exit status 1, after 2 restarts", e, last.w.pid)
		}
		h.stop()
	})
}

// Crashes in a row make a crash loop.
func TestStatusCrashLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1, MaxRestarts: -1})
		h.readyAll(1)
		time.Sleep(FirstGenerationGrace)
		for round := 1; round <= crashLoopAt; round++ {
			h.proc(1, 0).exit("exit status 1")
			synctest.Wait()
			st := h.status()
			if len(st.Restarting) != 1 || st.Restarting[0].Crashes != round || st.Restarting[0].CrashLoop != (round >= crashLoopAt) {
				t.Fatalf("crash %d: restarting %+v", round, st.Restarting)
			}
			time.Sleep(DefaultBackoffMax)
			synctest.Wait()
		}
		h.stop()
	})
}

// The command status shows is what serves: a reload to another command
// that fails leaves the old one serving, and the failed one is what the
// next generation would run.
func TestStatusCommandIsWhatServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1})
		h.readyAll(1)
		served := []string{"app"}
		if st := h.status(); !slices.Equal(st.Command.Args, served) || st.NextCommand != nil {
			t.Fatalf("command %q, next %v", st.Command.Args, st.NextCommand)
		}
		broken := Command{Path: "/bin/broken", Args: []string{"broken", "--flag"}}
		h.p.Reload(Update{Command: &broken})
		synctest.Wait()
		st := h.status()
		if !slices.Equal(st.Command.Args, served) || st.NextCommand == nil || !slices.Equal(st.NextCommand.Args, broken.Args) || st.Pending != 2 {
			t.Errorf("during the reload: command %q, next %v, pending %d", st.Command.Args, st.NextCommand, st.Pending)
		}
		h.proc(2, 0).exit("exit status 2")
		synctest.Wait()
		st = h.status()
		if st.Current != 1 || !slices.Equal(st.Command.Args, served) || st.NextCommand == nil || !slices.Equal(st.NextCommand.Args, broken.Args) {
			t.Errorf("after the failed reload: gen %d, command %q, next %v; want gen 1 serving app, next broken", st.Current, st.Command.Args, st.NextCommand)
		}
		h.stop()
	})
}

func workerIn(t *testing.T, st Status, gen uint64, slot int) WorkerStatus {
	t.Helper()
	for _, w := range st.Workers {
		if w.Gen == gen && w.Slot == slot && !w.Replacing {
			return w
		}
	}
	t.Fatalf("no worker of gen %d in slot %d: %+v", gen, slot, st.Workers)
	return WorkerStatus{}
}
