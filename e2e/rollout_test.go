package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child"
	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
)

func init() { roles.Register("rollout-app", roleRolloutApp) }

// roleRolloutApp is the library's hello server whose generations from 2 on
// misbehave where the environment says: the worker in slot
// ROLLOUT_FAIL_SLOT exits before it is ready, and with ROLLOUT_GATE set
// the workers of slots 1 and up wait for that file to exist before they
// serve (so that a test can look at a rollout half done).
func roleRolloutApp() int {
	if child.Generation() >= 2 {
		if s := os.Getenv("ROLLOUT_FAIL_SLOT"); s != "" && s == strconv.Itoa(child.WorkerID()) {
			fmt.Println("rollout-app: this slot refuses to start")
			return 3
		}
		if gate := os.Getenv("ROLLOUT_GATE"); gate != "" && child.WorkerID() >= 1 {
			deadline := time.Now().Add(testTimeout)
			for {
				if _, err := os.Stat(gate); err == nil {
					break
				}
				if time.Now().After(deadline) {
					fmt.Fprintln(os.Stderr, "rollout-app: no gate file")
					return 1
				}
				time.Sleep(5 * time.Millisecond) // polling a file the test makes
			}
		}
	}
	return roleLib()
}

// requirePerSlot skips where the listeners cannot have a socket per slot
// (no eBPF selector: not root, no CAP_BPF): a master there refuses
// --rollout, which TestRolloutRefusedWithoutSlotSockets checks.
func requirePerSlot(t *testing.T, m *operated) {
	t.Helper()
	for _, l := range statusOf(t, m.env).Listeners {
		if !l.PerSlot {
			t.Skipf("--rollout needs a socket per worker slot, which needs the eBPF selector (root or CAP_BPF); listener %s is %s/%s", l.Name, l.Mode, l.Selector)
		}
	}
}

// workerSampler counts, every millisecond or so, the master's children
// (its workers and their shims) from /proc, and keeps the most seen.
type workerSampler struct {
	stopC chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	peak  int
	n     int // samples
}

func sampleWorkers(pid int) *workerSampler {
	s := &workerSampler{stopC: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			n := len(children(pid))
			s.mu.Lock()
			s.peak, s.n = max(s.peak, n), s.n+1
			s.mu.Unlock()
			select {
			case <-s.stopC:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *workerSampler) stop() (peak, samples int) {
	close(s.stopC)
	<-s.done
	return s.peak, s.n
}

// liveFromEvents follows the event stream through gen's reload: the live
// workers counted from fork and exit events (starting from before), the
// most there were, and the "rollout" events' replaced counts in order.
func liveFromEvents(t *testing.T, ev *eventStream, before int, gen uint64) (peak int, replaced []int, outcome control.Event) {
	t.Helper()
	live := before
	peak = live
	for {
		e := ev.next(func(control.Event) bool { return true })
		switch e.Event {
		case "fork":
			live++
			peak = max(peak, live)
		case "exit":
			live--
		case "rollout":
			if e.Generation == gen && e.Replaced != nil {
				replaced = append(replaced, *e.Replaced)
			}
		case "reload-done", "reload-failed":
			if e.Generation == gen {
				return peak, replaced, e
			}
		}
	}
}

// A rollout of N=4 replaces K workers at a time: never more than N+K
// workers alive (from /proc and from the fork/exit events), the batches in
// order, each slot of gen 2 in the end, and nothing lost under load.
func TestRolloutPeakWorkers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		rollout string
		k       int
	}{{"1", 1}, {"50%", 2}} {
		t.Run(c.rollout, func(t *testing.T) {
			t.Parallel()
			m := startOperated(t, "rollout-app", "--workers", "4", "--rollout", c.rollout, "--listen", "web=127.0.0.1:0")
			requirePerSlot(t, m)
			addr := m.listenAddr("web")
			ev := watchEvents(t, m.env)
			samples := sampleWorkers(m.pid)
			stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
			mustCtl(t, m.env, "reload")
			peak, replaced, outcome := liveFromEvents(t, ev, 4, 2)
			assertNoFailures(t, stop())
			procPeak, n := samples.stop()
			if outcome.Event != "reload-done" {
				t.Fatalf("outcome %+v", outcome)
			}
			if peak > 4+c.k || procPeak > 4+c.k {
				t.Errorf("at most %d workers alive by the events, %d in /proc (%d samples): want at most N+K = %d", peak, procPeak, n, 4+c.k)
			}
			if peak <= 4 {
				t.Errorf("never more than %d workers alive: the new ones did not start before the old ones went", peak)
			}
			var want []int
			for r := 0; r <= 4; r += c.k {
				want = append(want, r)
			}
			if fmt.Sprint(replaced) != fmt.Sprint(want) {
				t.Errorf("rollout events' replaced counts %v, want %v", replaced, want)
			}
			st := statusOf(t, m.env)
			if st.Generation != 2 || st.Rollout != nil || len(st.Workers) < 4 {
				t.Fatalf("after the rollout: generation %d rollout %+v workers %d", st.Generation, st.Rollout, len(st.Workers))
			}
			assertServedBy(t, "tcp", addr, 2)
		})
	}
}

// Half done, status and the event stream show the rollout's progress; the
// reload command waits for its end.
func TestRolloutProgressInStatus(t *testing.T) {
	t.Parallel()
	gate := filepath.Join(t.TempDir(), "gate")
	m := startOperated(t, "rollout-app", "--workers", "4", "--rollout", "1", "--listen", "web=127.0.0.1:0", "--env", "ROLLOUT_GATE="+gate)
	requirePerSlot(t, m)
	ev := watchEvents(t, m.env)
	type result struct {
		code     int
		out, err string
	}
	reloaded := make(chan result, 1)
	go func() {
		code, out, errs, err := ctlRun(m.env, "reload")
		if err != nil {
			errs += err.Error()
		}
		reloaded <- result{code, out, errs}
	}()
	ev.next(func(e control.Event) bool { return e.Event == "rollout" && e.Replaced != nil && *e.Replaced == 1 })
	st := statusOf(t, m.env)
	if r := st.Rollout; r == nil || r.Progress != "rollout 1/4" || r.Generation != 2 || r.From != 1 || fmt.Sprint(r.Slots) != "[0]" {
		t.Fatalf("status half-way: rollout %+v", st.Rollout)
	}
	if st.Generation != 1 || st.Pending != 2 {
		t.Errorf("status half-way: generation %d pending %d, want 1 serving and 2 pending", st.Generation, st.Pending)
	}
	if text := mustCtl(t, m.env, "status"); !strings.Contains(text, "rollout 1/4: generation 2 replaces 1 at a time") {
		t.Errorf("status text half-way:\n%s", text)
	}
	// Meanwhile scale and upgrade are refused, and SIGHUPs coalesce into
	// one more rollout.
	if code, out, errs := ctl(t, m.env, "scale", "+1"); code == 0 || !strings.Contains(out+errs, "a rolling reload is in progress (rollout 1/4)") {
		t.Errorf("scale during a rollout: exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := ctl(t, m.env, "upgrade"); code == 0 || !strings.Contains(out+errs, "a rolling reload is in progress (rollout 1/4, gen 2)") {
		t.Errorf("upgrade during a rollout: exit %d: %s%s", code, out, errs)
	}
	m.signal(syscall.SIGHUP)
	m.signal(syscall.SIGHUP)
	select {
	case r := <-reloaded:
		t.Fatalf("hotcluster reload returned before the rollout's end: exit %d: %s%s", r.code, r.out, r.err)
	default:
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := <-reloaded
	if r.code != 0 {
		t.Fatalf("hotcluster reload: exit %d: %s%s", r.code, r.out, r.err)
	}
	ev.next(func(e control.Event) bool { return e.Event == "reload-done" && e.Generation == 3 })
	ev.next(func(e control.Event) bool { return e.Event == "drained" && e.Generation == 2 })
	st = statusOf(t, m.env)
	if st.Generation != 3 || st.Rollout != nil || st.Pending != 0 || st.Size != 4 {
		t.Errorf("after the coalesced rollout: generation %d rollout %+v pending %d size %d, want gen 3 of 4 and nothing more", st.Generation, st.Rollout, st.Pending, st.Size)
	}
}

// A batch that fails (gen 2's worker of slot 1 exits before it is ready)
// rolls back: slot 0, already gen 2's, gets a worker of gen 1 again, and
// one generation, the old, serves every slot; the reload says it failed,
// status too, and no request fails meanwhile.
func TestRolloutFailedBatchRestoresOneGeneration(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "rollout-app", "--workers", "4", "--rollout", "1", "--listen", "web=127.0.0.1:0", "--env", "ROLLOUT_FAIL_SLOT=1")
	requirePerSlot(t, m)
	addr := m.listenAddr("web")
	before := statusOf(t, m.env)
	ev := watchEvents(t, m.env)
	samples := sampleWorkers(m.pid)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	code, out, errs := ctl(t, m.env, "reload")
	if code != 1 || !strings.Contains(errs, "reload failed: gen 2") || !strings.Contains(errs, "rolled back: gen 1 serves all 4 workers again") {
		t.Fatalf("reload with a failing second batch: exit %d: %s%s", code, out, errs)
	}
	peak, replaced, outcome := liveFromEvents(t, ev, 4, 2)
	assertNoFailures(t, stop())
	procPeak, _ := samples.stop()
	if outcome.Event != "reload-failed" {
		t.Fatalf("outcome %+v", outcome)
	}
	if fmt.Sprint(replaced) != "[0 1]" {
		t.Errorf("rollout events' replaced counts %v, want [0 1] (slot 0 moved, then the batch of slot 1 failed)", replaced)
	}
	if peak > 5 || procPeak > 5 {
		t.Errorf("at most %d workers alive by the events, %d in /proc: want at most 5", peak, procPeak)
	}
	st := statusOf(t, m.env)
	if st.Generation != 1 || st.Rollout != nil || st.Pending != 0 || st.LastReload == nil || st.LastReload.OK || !strings.Contains(st.LastReload.Error, "rolled back") {
		t.Fatalf("status after the rollback: generation %d rollout %+v pending %d last reload %+v", st.Generation, st.Rollout, st.Pending, st.LastReload)
	}
	slots := map[int]int{}
	for _, w := range st.Workers {
		if w.Generation != 1 {
			t.Errorf("worker %+v after the rollback: want gen 1's only", w)
		}
		slots[w.Slot] = w.PID
	}
	if len(slots) != 4 {
		t.Errorf("slots after the rollback %v, want 0-3", slots)
	}
	var slot0 int
	for _, w := range before.Workers {
		if w.Slot == 0 {
			slot0 = w.PID
		}
	}
	if slots[0] == slot0 || slots[0] == 0 {
		t.Errorf("slot 0's worker after the rollback is pid %d (before: %d): want a new gen 1 worker, the old one drained when gen 2 took the slot", slots[0], slot0)
	}
	if text := mustCtl(t, m.env, "status"); !strings.Contains(text, "last reload: generation 2 FAILED") {
		t.Errorf("status text:\n%s", text)
	}
	assertServedBy(t, "tcp", addr, 1)
}

// No request fails across reloads with --rollout 1: a new connection per
// request with a plain http.Server.Shutdown, and keep-alive with the
// library's graceful serve.
func TestRolloutLosesNothing(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, role string
		keepAlive  bool
	}{{"new-connection", "plain", false}, {"keep-alive", "lib", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := startOperated(t, c.role, "--workers", "4", "--rollout", "1", "--listen", "web=127.0.0.1:0")
			requirePerSlot(t, m)
			addr := m.listenAddr("web")
			stop := load(t, loadgen.Config{Addr: addr, Clients: 8, KeepAlive: c.keepAlive})
			for gen := 2; gen <= 4; gen++ {
				mustCtl(t, m.env, "reload")
			}
			assertNoFailures(t, stop())
			assertServedBy(t, "tcp", addr, 4)
		})
	}
}

// Where a listener has one socket for a generation (a unix socket, or
// --handoff shared) traffic cannot move a slot at a time: the master
// refuses --rollout with exit 2 and says what works, leaving nothing.
func TestRolloutRefusedWithoutSlotSockets(t *testing.T) {
	t.Parallel()
	for name, listen := range map[string][]string{
		"unix":   {"--listen", "web=unix://" + filepath.Join(t.TempDir(), "app.sock")},
		"shared": {"--listen", "web=127.0.0.1:0", "--handoff", "shared"},
	} {
		t.Run(name, func(t *testing.T) {
			m := startMaster(t, "lib", append([]string{"--workers", "2", "--rollout", "1"}, listen...)...)
			if code := m.wait(); code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", code, strings.Join(m.output(), "\n"))
			}
			text := strings.Join(m.output(), "\n")
			if !strings.Contains(text, "--rollout 1: listener web (") || !strings.Contains(text, "cannot move a slot at a time; use --rollout all") {
				t.Errorf("output:\n%s", text)
			}
			if m.count(`CONTRACT`) != 0 {
				t.Error("a worker started")
			}
		})
	}
}
