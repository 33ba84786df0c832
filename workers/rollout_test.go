package workers

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// peak is the most fake processes that were alive at once, from the
// WorkerStarted and WorkerExited events.
func (h *harness) peak() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	live, most := 0, 0
	for _, e := range h.events {
		switch e.Kind {
		case WorkerStarted:
			live++
			most = max(most, live)
		case WorkerExited:
			live--
		}
	}
	return most
}

// reloadAsync starts a reload with cmd and returns its outcome's channel.
func (h *harness) reloadAsync(cmd string) <-chan Event {
	out := make(chan Event, 1)
	go func() {
		e, err := h.p.ReloadWait(context.Background(), &Update{Command: &Command{Path: cmd, Args: []string{cmd}}})
		if err != nil {
			h.t.Error(err)
		}
		out <- e
	}()
	synctest.Wait()
	return out
}

func TestParseRollout(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want int
		bad  bool
	}{
		{"", 8, 8, false}, {"all", 8, 8, false}, {"1", 8, 1, false}, {"3", 8, 3, false},
		{"8", 8, 8, false}, {"20", 8, 8, false}, {"50%", 8, 4, false}, {"10%", 8, 1, false},
		{"30%", 8, 3, false}, {"100%", 8, 8, false}, {"1%", 1, 1, false},
		{"0", 8, 0, true}, {"-1", 8, 0, true}, {"0%", 8, 0, true}, {"101%", 8, 0, true}, {"x", 8, 0, true}, {"2.5", 8, 0, true},
	} {
		r, err := ParseRollout(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseRollout(%q) = %+v, want an error", c.in, r)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRollout(%q): %v", c.in, err)
			continue
		}
		if got := r.Batch(c.n); got != c.want {
			t.Errorf("ParseRollout(%q).Batch(%d) = %d, want %d", c.in, c.n, got, c.want)
		}
	}
}

// A rollout replaces K slots at a time, in order: each batch's slots move
// once its workers are ready, their old workers drain, and the next batch
// starts only once those have exited: never more than N+K workers.
func TestRolloutBatchesInOrder(t *testing.T) {
	for _, c := range []struct {
		rollout Rollout
		moves   []string
	}{
		{Rollout{Workers: 1}, []string{"2:[0]", "2:[1]", "2:[2]", "2:[3]"}},
		{Rollout{Percent: 50}, []string{"2:[0 1]", "2:[2 3]"}},
	} {
		t.Run(c.rollout.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 4
				k := c.rollout.Batch(n)
				h := newHarness(t, Config{Workers: n, Rollout: c.rollout})
				h.readyAll(1)
				out := h.reloadAsync("/bin/app2")
				for b := 0; b < n/k; b++ {
					if got := h.spawned(2); got != (b+1)*k {
						t.Fatalf("batch %d: gen 2 has started %d workers, want %d", b+1, got, (b+1)*k)
					}
					st := h.status()
					if st.Current != 1 || st.Rollout == nil || st.Rollout.Replaced != b*k || st.Rollout.String() != "rollout "+strconv.Itoa(b*k)+"/4" {
						t.Fatalf("batch %d: status current %d rollout %+v", b+1, st.Current, st.Rollout)
					}
					for slot := b * k; slot < (b+1)*k; slot++ {
						h.proc(2, slot).ready()
					}
					synctest.Wait()
					for slot := b * k; slot < (b+1)*k; slot++ {
						if !h.proc(1, slot).got(syscall.SIGTERM) {
							t.Fatalf("batch %d: gen 1's worker %d was not drained once its slot moved", b+1, slot)
						}
					}
					for slot := (b + 1) * k; slot < n; slot++ {
						if h.proc(1, slot).got(syscall.SIGTERM) {
							t.Fatalf("batch %d: gen 1's worker %d drained before its batch", b+1, slot)
						}
					}
				}
				e := <-out
				if e.Kind != GenReady || e.Gen != 2 {
					t.Fatalf("outcome %+v, want GenReady of gen 2", e)
				}
				if got := h.socks.moved(); !slices.Equal(got, c.moves) {
					t.Errorf("moves %v, want %v", got, c.moves)
				}
				if got := h.socks.activations(); slices.Contains(got, 2) {
					t.Errorf("gen 2 was activated as a whole (%v): its last batch's move makes it active", got)
				}
				if p := h.peak(); p > n+k {
					t.Errorf("at most %d workers were alive at once, want at most N+K = %d", p, n+k)
				}
				st := h.status()
				if st.Current != 2 || st.Rollout != nil || st.Pending != 0 || len(st.Workers) != n {
					t.Errorf("after the rollout: %+v", st)
				}
				for _, w := range st.Workers {
					if w.Gen != 2 {
						t.Errorf("worker %+v after the rollout, want gen 2's only", w)
					}
				}
				if got := len(h.kinds(RolloutBatch)); got != n/k+1 {
					t.Errorf("%d rollout events, want %d (the start and each batch)", got, n/k+1)
				}
				if err := h.stop(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// A batch that fails rolls back: the slots already replaced get workers of
// the old command again (K at a time), move back, and the new generation's
// workers drain; the reload reports the failure once one generation serves
// every slot.
func TestRolloutFailedBatchRollsBack(t *testing.T) {
	for _, how := range []string{"exit", "timeout", "crash-after-move"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 4
				h := newHarness(t, Config{Workers: n, Rollout: Rollout{Workers: 1}, ReadyTimeout: time.Minute})
				h.readyAll(1)
				out := h.reloadAsync("/bin/app2")
				h.proc(2, 0).ready()
				synctest.Wait()
				h.proc(2, 1).ready()
				synctest.Wait() // slots 0 and 1 are gen 2's
				switch how {
				case "exit":
					h.proc(2, 2).exit("exit status 1")
				case "timeout":
					time.Sleep(time.Minute + time.Second)
				case "crash-after-move":
					h.proc(2, 0).exit("exit status 2")
				}
				synctest.Wait()
				st := h.status()
				if st.Rollout == nil || !st.Rollout.Back {
					t.Fatalf("after the failure: rollout %+v, want rolling back", st.Rollout)
				}
				if how != "crash-after-move" && !h.proc(2, 2).gone() {
					t.Fatal("the failed batch's worker is still alive")
				}
				// Back, one at a time: a worker of gen 1 (the old command) per
				// replaced slot, the one whose new worker died first.
				want := []int{1, 0}
				if how == "crash-after-move" {
					want = []int{0, 1}
				}
				for _, slot := range want {
					fp := h.proc(1, slot)
					if fp.spec.cmd.Path != "/bin/app" || fp.gone() {
						t.Fatalf("slot %d: newest gen 1 worker runs %q (gone %v), want a live /bin/app", slot, fp.spec.cmd.Path, fp.gone())
					}
					fp.ready()
					synctest.Wait()
					if w := h.proc(2, slot); !w.gone() {
						t.Fatalf("slot %d moved back but gen 2's worker is alive", slot)
					}
				}
				e := <-out
				if e.Kind != GenFailed || !strings.Contains(e.Err, "rolled back: gen 1 serves all 4 workers") {
					t.Fatalf("outcome %+v, want GenFailed that says it rolled back", e)
				}
				if got, want := h.socks.moved(), []string{"2:[0]", "2:[1]", "1:[" + strconv.Itoa(want[0]) + "]", "1:[" + strconv.Itoa(want[1]) + "]"}; !slices.Equal(got, want) {
					t.Errorf("moves %v, want %v", got, want)
				}
				if p := h.peak(); p > n+1 {
					t.Errorf("at most %d workers alive at once, want at most %d", p, n+1)
				}
				st = h.status()
				if st.Current != 1 || st.Rollout != nil || st.Pending != 0 {
					t.Fatalf("after the rollback: current %d rollout %+v pending %d", st.Current, st.Rollout, st.Pending)
				}
				var slots []int
				for _, w := range st.Workers {
					if w.Gen != 1 || w.State != "ready" {
						t.Errorf("worker %+v after the rollback, want gen 1's only", w)
					}
					slots = append(slots, w.Slot)
				}
				if !slices.Equal(slots, []int{0, 1, 2, 3}) {
					t.Errorf("slots %v after the rollback, want 0-3", slots)
				}
				if st.LastReload == nil || st.LastReload.Kind != GenFailed {
					t.Errorf("last reload %+v, want the failure", st.LastReload)
				}
				if err := h.stop(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// SIGHUPs during a rollout coalesce into one more rollout after it; scaling
// is refused meanwhile, and a crashed old worker is respawned with the old
// command.
func TestRolloutCoalescesReloadsAndKeepsOldSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 3, Rollout: Rollout{Workers: 1}, BackoffMin: time.Second})
		h.readyAll(1)
		time.Sleep(FirstGenerationGrace) // a crash is a crash, not a failed start
		first := h.reloadAsync("/bin/app2")
		second := h.reloadAsync("/bin/app3")
		third := h.reloadAsync("/bin/app3")
		if _, err := h.p.ScaleTo(context.Background(), 1, true); err == nil || !strings.Contains(err.Error(), "rollout 0/3") {
			t.Errorf("scale during a rollout: %v, want a refusal naming the rollout", err)
		}
		h.proc(2, 0).ready()
		synctest.Wait()
		// Gen 1's worker 2, not replaced yet, crashes: respawned with gen 1's
		// command after the back-off.
		h.proc(1, 2).exit("exit status 3")
		synctest.Wait()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if fp := h.proc(1, 2); fp.gone() || fp.spec.cmd.Path != "/bin/app" {
			t.Fatalf("gen 1's slot 2 after its crash: %+v gone %v, want a respawn running /bin/app", fp.spec.cmd, fp.gone())
		}
		if h.spawned(3) != 0 {
			t.Fatal("gen 3 started during gen 2's rollout")
		}
		h.proc(2, 1).ready()
		synctest.Wait()
		h.proc(2, 2).ready()
		synctest.Wait()
		if e := <-first; e.Kind != GenReady || e.Gen != 2 {
			t.Fatalf("first reload: %+v", e)
		}
		for slot := 0; slot < 3; slot++ {
			if h.spawned(3) != slot+1 {
				t.Fatalf("gen 3 (the coalesced reloads) started %d workers before batch %d, want %d", h.spawned(3), slot+1, slot+1)
			}
			h.proc(3, slot).ready()
			synctest.Wait()
		}
		for _, c := range []<-chan Event{second, third} {
			if e := <-c; e.Kind != GenReady || e.Gen != 3 {
				t.Fatalf("coalesced reload: %+v, want gen 3 ready", e)
			}
		}
		if h.spawned(4) != 0 {
			t.Fatal("a gen 4 started: the reloads did not coalesce")
		}
		if p := h.peak(); p > 4 {
			t.Errorf("peak %d workers, want at most N+K = 4", p)
		}
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A Move that fails to steer (not a quiet wait that ran out) fails the
// batch, which rolls back.
func TestRolloutMoveErrorRollsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2, Rollout: Rollout{Workers: 1}})
		h.readyAll(1)
		h.socks.mu.Lock()
		h.socks.moveErr = errors.New("steer: no")
		h.socks.mu.Unlock()
		out := h.reloadAsync("/bin/app2")
		h.proc(2, 0).ready()
		synctest.Wait()
		if h.proc(1, 0).got(syscall.SIGTERM) {
			t.Fatal("gen 1's worker 0 was drained though its slot did not move")
		}
		h.socks.mu.Lock()
		h.socks.moveErr = nil
		h.socks.mu.Unlock()
		synctest.Wait() // slot 0 goes back to gen 1's worker, which never drained
		if n := h.spawned(1); n != 2 {
			t.Errorf("gen 1 started %d workers, want its 2 (slot 0's old worker still serves)", n)
		}
		if e := <-out; e.Kind != GenFailed || !strings.Contains(e.Err, "could not move") {
			t.Fatalf("outcome %+v", e)
		}
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A stop during a rollout drains both generations' workers (the new ones
// that serve slots included, none is killed) and reports the reload failed.
func TestRolloutStopDrainsBoth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 3, Rollout: Rollout{Workers: 1}})
		h.readyAll(1)
		out := h.reloadAsync("/bin/app2")
		h.proc(2, 0).ready()
		synctest.Wait() // slot 0 is gen 2's; slot 1's new worker starts
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
		if e := <-out; e.Kind != GenFailed || !strings.Contains(e.Err, "stopping") {
			t.Errorf("outcome %+v, want GenFailed: stopping", e)
		}
		if fp := h.proc(2, 0); !fp.got(syscall.SIGTERM) || fp.got(syscall.SIGKILL) {
			t.Errorf("gen 2's serving worker got %v, want the stop signal alone", fp.signals)
		}
		for slot := 1; slot < 3; slot++ {
			if fp := h.proc(1, slot); !fp.got(syscall.SIGTERM) {
				t.Errorf("gen 1's worker %d was not drained", slot)
			}
		}
	})
}
