package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// The pool's state machine, driven in-process: a fake spawner stands for
// the processes, which "become ready", "exit" and "hang" on command, and
// synctest's clock stands for the timers, so a minute of --ready-timeout
// passes at once. The real-process tests at the root of the repository
// remain the specification of what processes do.

// fakeProc is a worker process that does what the test says.
type fakeProc struct {
	h    *harness
	w    *worker
	spec spawnSpec

	mu      sync.Mutex
	signals []syscall.Signal
	exited  bool
	// hung ignores every signal but SIGKILL, as a stopped or deadlocked
	// process does; otherwise the stop signal, SIGABRT and SIGKILL end it.
	hung bool
	// holdsNone: it closed its sockets.
	holdsNone bool
}

func (fp *fakeProc) signal(sig syscall.Signal) {
	fp.mu.Lock()
	fp.signals = append(fp.signals, sig)
	ends := sig == syscall.SIGKILL || !fp.hung && (sig == fp.h.stopSignal || sig == syscall.SIGABRT)
	fp.mu.Unlock()
	if ends {
		// A process exits a moment after the signal, not inside kill(2).
		fp.h.wg.Go(func() { fp.exit("killed by signal " + sig.String()) })
	}
}

func (fp *fakeProc) holds(inodes []uint64) ([]bool, bool) {
	held := make([]bool, len(inodes))
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for i := range held {
		held[i] = !fp.holdsNone
	}
	return held, true
}

func (fp *fakeProc) gone() bool {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.exited
}

// ready sends READY=1.
func (fp *fakeProc) ready() { fp.h.p.post(notifyEvent{w: fp.w, msg: "READY=1"}) }

// exit ends the process, once.
func (fp *fakeProc) exit(how string) {
	fp.mu.Lock()
	if fp.exited {
		fp.mu.Unlock()
		return
	}
	fp.exited = true
	fp.mu.Unlock()
	fp.h.p.post(exitEvent{w: fp.w, err: errors.New(how)})
}

func (fp *fakeProc) got(sig syscall.Signal) bool {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return slices.Contains(fp.signals, sig)
}

// fakeSockets is a Sockets whose Activate the test can hold up.
type fakeSockets struct {
	mu        sync.Mutex
	activated []uint64
	released  []uint64
	served    []string // each Serve call: "gen:slots"
	moves     []string // each Move call: "gen:slots"
	moveErr   error    // what Move returns
	// hold, when set, makes Activate wait for it to close (or for ctx).
	hold chan struct{}
}

func (s *fakeSockets) Names() []string                       { return []string{"web"} }
func (s *fakeSockets) Files(uint64, int) ([]*os.File, error) { return nil, nil }
func (s *fakeSockets) Serve(gen uint64, slots []int) error {
	slices.Sort(slots)
	s.mu.Lock()
	s.served = append(s.served, fmt.Sprintf("%d:%v", gen, slots))
	s.mu.Unlock()
	return nil
}
func (s *fakeSockets) serves() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.served)
}
func (s *fakeSockets) Inodes(uint64, int) []uint64 { return []uint64{42} }
func (s *fakeSockets) Describe() []string          { return []string{"web=127.0.0.1:8080"} }
func (s *fakeSockets) Release(gen uint64) {
	s.mu.Lock()
	s.released = append(s.released, gen)
	s.mu.Unlock()
}
func (s *fakeSockets) activations() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.activated)
}
func (s *fakeSockets) setHold(c chan struct{}) { s.mu.Lock(); s.hold = c; s.mu.Unlock() }
func (s *fakeSockets) holdCh() chan struct{}   { s.mu.Lock(); defer s.mu.Unlock(); return s.hold }
func (s *fakeSockets) record(gen uint64) {
	s.mu.Lock()
	s.activated = append(s.activated, gen)
	s.mu.Unlock()
}
func (s *fakeSockets) Move(ctx context.Context, gen uint64, slots []int) error {
	s.mu.Lock()
	s.moves = append(s.moves, fmt.Sprintf("%d:%v", gen, slots))
	err := s.moveErr
	s.mu.Unlock()
	return err
}
func (s *fakeSockets) moved() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.moves)
}
func (s *fakeSockets) Activate(ctx context.Context, gen uint64) error {
	s.record(gen)
	if h := s.holdCh(); h != nil {
		select {
		case <-h:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// harness runs a pool with fake processes inside a synctest bubble.
type harness struct {
	t          *testing.T
	p          *Pool
	socks      *fakeSockets
	stopSignal syscall.Signal
	wg         sync.WaitGroup // the fake processes' exits
	runErr     chan error

	mu     sync.Mutex
	procs  []*fakeProc
	events []Event
}

// newHarness starts a pool of cfg (workers and readiness from cfg; the
// fakes report READY=1 only when told) and returns once its first
// generation was started.
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, socks: &fakeSockets{}, stopSignal: syscall.SIGTERM, runErr: make(chan error, 1)}
	cfg.Command = Command{Path: "/bin/app", Args: []string{"app"}}
	cfg.Sockets = h.socks
	cfg.Output = io.Discard
	cfg.RuntimeDir = t.TempDir()
	cfg.Ready = ReadyNotify
	cfg.OnEvent = func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	p.spawnFn = h.spawn
	p.strict = true
	go func() { h.runErr <- p.Run(context.Background()) }()
	synctest.Wait()
	return h
}

var pids = 1000

func (h *harness) spawn(s spawnSpec) (*worker, error) {
	closeFiles(s.files)
	h.mu.Lock()
	defer h.mu.Unlock()
	pids++
	fp := &fakeProc{h: h, spec: s}
	fp.w = &worker{gen: s.gen, slot: s.slot, pid: pids, proc: fp, started: time.Now()}
	h.procs = append(h.procs, fp)
	return fp.w, nil
}

// proc returns the newest fake process of generation gen in slot.
func (h *harness) proc(gen uint64, slot int) *fakeProc {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.procs) - 1; i >= 0; i-- {
		if fp := h.procs[i]; fp.spec.gen == gen && fp.spec.slot == slot {
			return fp
		}
	}
	h.t.Fatalf("no process of gen %d slot %d", gen, slot)
	return nil
}

// spawned counts the processes started for generation gen.
func (h *harness) spawned(gen uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, fp := range h.procs {
		if fp.spec.gen == gen {
			n++
		}
	}
	return n
}

// readyAll makes every live process of gen report ready, and lets the
// pool take it in.
func (h *harness) readyAll(gen uint64) {
	h.mu.Lock()
	var ps []*fakeProc
	for _, fp := range h.procs {
		if fp.spec.gen == gen && !fp.gone() {
			ps = append(ps, fp)
		}
	}
	h.mu.Unlock()
	for _, fp := range ps {
		fp.ready()
	}
	synctest.Wait()
}

// kinds returns the events of kind seen so far.
func (h *harness) kinds(kind EventKind) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) status() Status {
	h.t.Helper()
	st, err := h.p.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// stop stops the pool gracefully and waits for Run.
func (h *harness) stop() error {
	h.p.Stop()
	synctest.Wait()
	h.wg.Wait()
	synctest.Wait()
	select {
	case err := <-h.runErr:
		return err
	default:
		h.t.Fatal("Run did not return after Stop")
		return nil
	}
}

func TestPoolFirstGenerationServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 3})
		if n := h.spawned(1); n != 3 {
			t.Fatalf("gen 1 started %d workers, want 3", n)
		}
		select {
		case <-h.p.Ready():
			t.Fatal("Ready before any worker reported")
		default:
		}
		h.readyAll(1)
		<-h.p.Ready()
		if st := h.status(); st.Current != 1 || st.State != StateServing || len(st.Workers) != 3 {
			t.Errorf("status %+v", st)
		}
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
		for slot := 0; slot < 3; slot++ {
			if !h.proc(1, slot).got(syscall.SIGTERM) {
				t.Errorf("slot %d was not sent the stop signal", slot)
			}
		}
	})
}

// Reloads asked for during a turnover coalesce into one more generation,
// and every one of them learns the outcome of the generation carrying it.
func TestPoolReloadsCoalesceIntoOneMore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2})
		h.readyAll(1)
		outcomes := make(chan Event, 10)
		for i := 0; i < 10; i++ {
			go func() {
				e, err := h.p.ReloadWait(context.Background(), nil)
				if err != nil {
					t.Error(err)
				}
				outcomes <- e
			}()
		}
		synctest.Wait()
		h.readyAll(2) // gen 2 serves; the queued reloads start gen 3
		h.readyAll(3)
		gens := map[uint64]int{}
		for i := 0; i < 10; i++ {
			e := <-outcomes
			if e.Kind != GenReady {
				t.Errorf("outcome %+v, want GenReady", e)
			}
			gens[e.Gen]++
		}
		if len(gens) > 2 || gens[2]+gens[3] != 10 {
			t.Errorf("outcomes by generation %v, want all from gens 2 and 3", gens)
		}
		if h.spawned(4) != 0 {
			t.Error("a fourth generation was started")
		}
		if st := h.status(); st.Current != 3 || len(st.Workers) != 2 {
			t.Errorf("status %+v, want gen 3 with 2 workers", st)
		}
		h.stop()
	})
}

// A worker of the new generation that exits before it is ready fails the
// reload; the serving generation is never told to stop.
func TestPoolFailClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2})
		h.readyAll(1)
		done := make(chan Event, 1)
		go func() { e, _ := h.p.ReloadWait(context.Background(), nil); done <- e }()
		synctest.Wait()
		h.proc(2, 0).ready()
		h.proc(2, 1).exit("exit status 3")
		synctest.Wait()
		e := <-done
		if e.Kind != GenFailed || e.Gen != 2 {
			t.Fatalf("outcome %+v, want gen 2 failed", e)
		}
		if !h.proc(2, 0).got(syscall.SIGKILL) {
			t.Error("the failed generation's other worker was not killed")
		}
		for slot := 0; slot < 2; slot++ {
			if fp := h.proc(1, slot); len(fp.signals) != 0 {
				t.Errorf("gen 1 slot %d got %v", slot, fp.signals)
			}
		}
		if acts := h.socks.activations(); !slices.Equal(acts, []uint64{1}) {
			t.Errorf("activations %v, want only gen 1", acts)
		}
		h.stop()
	})
}

// A generation that is not ready within ReadyTimeout fails, its workers
// killed, the serving one untouched: a minute passes in no time.
func TestPoolReadyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2, ReadyTimeout: time.Minute})
		h.readyAll(1)
		h.p.Reload(Update{})
		synctest.Wait()
		h.proc(2, 0).ready()
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		failed := h.kinds(GenFailed)
		if len(failed) != 1 || failed[0].Gen != 2 {
			t.Fatalf("failures %+v", failed)
		}
		if !h.proc(2, 1).got(syscall.SIGKILL) || h.proc(1, 0).got(syscall.SIGTERM) {
			t.Error("the late generation was not killed, or the serving one was stopped")
		}
		h.stop()
	})
}

// A worker of the new generation that dies while the traffic moves fails
// the reload and moves the traffic back to the serving generation.
func TestPoolExitDuringActivationMovesTrafficBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2})
		h.readyAll(1)
		h.socks.setHold(make(chan struct{})) // the quiet wait never ends
		h.p.Reload(Update{})
		synctest.Wait()
		h.readyAll(2)
		h.proc(2, 1).exit("exit status 1")
		synctest.Wait()
		h.socks.setHold(nil)
		if acts := h.socks.activations(); !slices.Equal(acts, []uint64{1, 2, 1}) {
			t.Errorf("activations %v, want 1, 2, then back to 1", acts)
		}
		if st := h.status(); st.Current != 1 {
			t.Errorf("serving gen %d, want 1", st.Current)
		}
		if f := h.kinds(GenFailed); len(f) != 1 || f[0].Gen != 2 {
			t.Errorf("failures %+v", f)
		}
		h.stop()
	})
}

// Stop while the traffic moves: the activation is cancelled and Run
// returns once every worker has stopped.
func TestPoolStopDuringActivation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2})
		h.readyAll(1)
		h.socks.setHold(make(chan struct{}))
		h.p.Reload(Update{})
		synctest.Wait()
		h.readyAll(2)
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
		for _, g := range []uint64{1, 2} {
			for slot := 0; slot < 2; slot++ {
				if !h.proc(g, slot).gone() {
					t.Errorf("gen %d slot %d still running after Stop", g, slot)
				}
			}
		}
	})
}

// Scaling while a generation starts: the new generation is started with
// the size of the moment, and grows to the new size once it serves.
func TestPoolScaleDuringTurnover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2})
		h.readyAll(1)
		h.p.Reload(Update{})
		synctest.Wait()
		h.p.Scale(+2)
		synctest.Wait()
		h.readyAll(2)
		h.readyAll(2)
		st := h.status()
		var gen2 int
		for _, w := range st.Workers {
			if w.Gen == 2 {
				gen2++
			}
		}
		if st.Size != 4 || gen2 != 4 {
			t.Errorf("size %d, %d workers of gen 2; want 4 and 4", st.Size, gen2)
		}
		h.stop()
	})
}

// A standby replaces a worker only once it is ready; the worker then
// drains.
func TestPoolStandbyPromotion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1})
		h.readyAll(1)
		old := h.proc(1, 0)
		h.p.Recycle(0, old.w.pid, "too big")
		synctest.Wait()
		standby := h.proc(1, 0)
		if standby == old {
			t.Fatal("no standby started")
		}
		if old.got(syscall.SIGTERM) {
			t.Fatal("the old worker was stopped before its replacement was ready")
		}
		standby.ready()
		synctest.Wait()
		if !old.got(syscall.SIGTERM) {
			t.Error("the old worker was not drained once the standby was ready")
		}
		st := h.status()
		if len(st.Workers) != 1 || st.Workers[0].PID != standby.w.pid {
			t.Errorf("status %+v, want the standby alone in slot 0", st.Workers)
		}
		h.stop()
	})
}

// A serving slot that crashes more than MaxRestarts times within the
// window is given up; once every slot is, the pool is errored; a new
// generation serves again.
func TestPoolCrashLoopErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2, MaxRestarts: 2, RestartWindow: time.Minute})
		h.readyAll(1)
		// Past the first generation's grace, when a crash is a failed start.
		time.Sleep(FirstGenerationGrace)
		for round := 0; round < 3; round++ {
			for slot := 0; slot < 2; slot++ {
				h.proc(1, slot).exit("exit status 1")
			}
			synctest.Wait()
			time.Sleep(DefaultBackoffMax) // every back-off is shorter
			synctest.Wait()
		}
		st := h.status()
		if st.State != StateErrored || len(st.Errored) != 2 || len(st.Workers) != 0 {
			t.Fatalf("status %+v, want errored with both slots given up", st)
		}
		if n := h.spawned(1); n != 6 {
			t.Errorf("gen 1 started %d processes, want 2 + 2×2 restarts", n)
		}
		if len(h.kinds(GenErrored)) != 1 {
			t.Errorf("GenErrored events: %v", h.kinds(GenErrored))
		}
		h.p.Reload(Update{})
		synctest.Wait()
		h.readyAll(2)
		if st := h.status(); st.State != StateServing || st.Current != 2 {
			t.Errorf("after a reload: %+v", st)
		}
		h.stop()
	})
}

// A worker that misses its watchdog is hung: a standby starts, and once it
// is ready the hung worker gets SIGCONT and SIGABRT.
func TestPoolWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1, Watchdog: time.Second})
		h.readyAll(1)
		w := h.proc(1, 0)
		for i := 0; i < 5; i++ { // pings keep it alive
			time.Sleep(500 * time.Millisecond)
			h.p.post(notifyEvent{w: w.w, msg: "WATCHDOG=1"})
			synctest.Wait()
		}
		if len(h.kinds(WorkerHung)) != 0 {
			t.Fatal("hung although it pinged")
		}
		w.mu.Lock()
		w.hung = true
		w.mu.Unlock()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if len(h.kinds(WorkerHung)) != 1 {
			t.Fatalf("hung events %v", h.kinds(WorkerHung))
		}
		if st := h.status(); len(st.Workers) != 2 || st.Workers[0].State != "hung" {
			t.Errorf("status %+v, want the hung worker and its standby", st.Workers)
		}
		standby := h.proc(1, 0)
		standby.ready()
		synctest.Wait()
		if !w.got(syscall.SIGCONT) || !w.got(syscall.SIGABRT) {
			t.Errorf("the hung worker got %v, want SIGCONT and SIGABRT", w.signals)
		}
		time.Sleep(hungKillAfter)
		synctest.Wait()
		if !w.got(syscall.SIGKILL) || !w.gone() {
			t.Errorf("the hung worker got %v and is gone: %v; want SIGKILL", w.signals, w.gone())
		}
		h.stop()
	})
}

// A worker replaced by a standby that ignores its stop signal is still
// killed at the drain deadline, and a forced stop reaches it.
func TestPoolReplacedWorkerIsKilledAtTheDrainDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1, DrainTimeout: 10 * time.Second})
		h.readyAll(1)
		old := h.proc(1, 0)
		old.hung = true // ignores SIGTERM
		h.p.Recycle(0, old.w.pid, "too big")
		synctest.Wait()
		h.proc(1, 0).ready()
		synctest.Wait()
		if !old.got(syscall.SIGTERM) || old.gone() {
			t.Fatalf("replaced worker: signals %v, gone %v", old.signals, old.gone())
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if !old.got(syscall.SIGKILL) {
			t.Errorf("the replaced worker got %v, want SIGKILL at the drain deadline", old.signals)
		}
		h.stop()
	})
}

// A worker taken as ready that closes its socket a moment later (at its
// own pace, after --ready-delay) is caught by the second look: in the first
// generation that is a failed start.
func TestPoolWorkerClosingItsSocketLateFailsFirstGeneration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2, ReadyDelay: time.Second})
		h.readyAll(1)
		<-h.p.Ready()
		h.proc(1, 0).mu.Lock()
		h.proc(1, 0).holdsNone = true
		h.proc(1, 0).mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		h.wg.Wait()
		synctest.Wait()
		err := <-h.runErr
		if err == nil || !strings.Contains(err.Error(), "first generation failed: worker 0") || !strings.Contains(err.Error(), "does not hold web=") {
			t.Errorf("Run: %v", err)
		}
	})
}

// A worker that holds none of its sockets when it reports ready fails its
// generation; as the first one, Run returns the failure.
func TestPoolWorkerWithoutSocketFailsFirstGeneration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2})
		h.proc(1, 1).holdsNone = true
		h.readyAll(1)
		h.wg.Wait()
		synctest.Wait()
		err := <-h.runErr
		want := fmt.Sprintf("first generation failed: worker 1 (pid %d) does not hold web=127.0.0.1:8080: it closed fd 3", h.proc(1, 1).w.pid)
		if err == nil || len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
			t.Errorf("Run: %v, want %q…", err, want)
		}
	})
}

// A first generation whose workers cannot be started at all: Run's error
// says why and keeps the cause, for errors.Is.
func TestPoolFirstGenerationErrorKeepsTheCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := New(Config{Command: Command{Path: "/bin/app", Args: []string{"app"}}, Workers: 1,
			Output: io.Discard, RuntimeDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		p.strict = true
		p.spawnFn = func(spawnSpec) (*worker, error) {
			return nil, fmt.Errorf("start gen 1 worker 0: fork/exec /bin/app: %w", fs.ErrPermission)
		}
		err = p.Run(context.Background())
		var fe *FirstGenerationError
		if !errors.As(err, &fe) || fe.Gen != 1 || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Run: %v (%T), want a *FirstGenerationError wrapping fs.ErrPermission", err, err)
		}
	})
}

// The serving generation's slots that have no worker to accept (a crashed
// one until its respawn, those scaled away before their workers stop) are
// left out of the sockets' selection; Files (the respawn) puts one back.
func TestPoolServesOnlyLiveSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 3})
		h.readyAll(1)
		time.Sleep(FirstGenerationGrace)
		h.proc(1, 1).exit("exit status 1")
		synctest.Wait()
		if got := h.socks.serves(); !slices.Equal(got, []string{"1:[0 2]"}) {
			t.Fatalf("after slot 1 crashed: Serve calls %v, want [1:[0 2]]", got)
		}
		time.Sleep(DefaultBackoffMax)
		synctest.Wait()
		if h.spawned(1) != 4 {
			t.Fatalf("slot 1 not respawned: %d processes", h.spawned(1))
		}
		old := h.proc(1, 2)
		h.p.Scale(-1)
		synctest.Wait()
		got := h.socks.serves()
		if len(got) < 2 || got[1] != "1:[0 1]" {
			t.Fatalf("after scaling to 2: Serve calls %v, want 1:[0 1] second", got)
		}
		if !old.got(syscall.SIGTERM) {
			t.Error("the scaled-away worker was not stopped")
		}
		h.stop()
	})
}

// Config.BeforeStop delays a worker's stop signal by what it returns
// (bounded by MaxStopDelay), and the drain deadline counts from the
// signal; it is told whether the worker said it drains keep-alive.
func TestPoolBeforeStopDelaysTheStopSignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var asked []bool
		cfg := Config{Workers: 1, DrainTimeout: 10 * time.Second, BeforeStop: func(pid int, drains bool) time.Duration {
			asked = append(asked, drains)
			if len(asked) > 1 {
				return 0 // the final stop: at once, as the harness expects
			}
			return time.Hour // bounded to MaxStopDelay
		}}
		h := newHarness(t, cfg)
		h.readyAll(1)
		old := h.proc(1, 0)
		old.hung = true // ignores SIGTERM: the drain deadline kills it
		h.p.post(notifyEvent{w: old.w, msg: "X_HOTCLUSTER_DRAINS=keep-alive"})
		h.p.Recycle(0, old.w.pid, "too big")
		synctest.Wait()
		h.proc(1, 0).ready()
		synctest.Wait()
		if old.got(syscall.SIGTERM) {
			t.Errorf("stop signal sent at once: %v", old.signals)
		}
		time.Sleep(MaxStopDelay)
		synctest.Wait()
		if !old.got(syscall.SIGTERM) {
			t.Errorf("no stop signal after MaxStopDelay: %v", old.signals)
		}
		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		if old.got(syscall.SIGKILL) {
			t.Errorf("killed before the drain timeout counted from the signal: %v", old.signals)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if !old.got(syscall.SIGKILL) {
			t.Errorf("the worker got %v, want SIGKILL at the drain deadline", old.signals)
		}
		if len(asked) != 1 || !asked[0] {
			t.Errorf("BeforeStop asked %v, want once, with drains keep-alive", asked)
		}
		h.stop()
		if len(asked) != 2 || asked[1] {
			t.Errorf("BeforeStop asked %v, want a second time for the new worker, which said nothing", asked)
		}
	})
}
