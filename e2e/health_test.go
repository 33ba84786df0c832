package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"

	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child"
	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// These tests cover what keeps a master from saying "serving" while
// nothing serves: workers that do not hold their sockets, slots that
// crash in a loop, a first generation that dies right after it was taken
// as ready, and hung workers.

// A program that closes fd 3 and binds a port of its own never gets the
// master's connections: its generation is not ready, and the first one
// failing is a failed start, with the reason.
func TestWorkerWithoutItsSocketIsNotReady(t *testing.T) {
	t.Parallel()
	// It closes fd 3 before it says READY=1: deterministic, where a program
	// taken as ready by --ready-delay may close it before or after the
	// delay (the pool looks again once it serves; see its own tests).
	m := startMaster(t, "own-port", "--workers", "2", "--listen", "web=127.0.0.1:0", "--ready", "notify")
	addr := m.listenAddr("web")
	if code := m.wait(); code != 1 {
		t.Fatalf("exit code %d, want 1 for a first generation that cannot serve", code)
	}
	want := `first generation failed: worker \d \(pid \d+\) does not hold web=` + regexp.QuoteMeta(addr) + `: it closed fd 3, perhaps to bind the port itself; see docs/workers.md`
	m.waitLine(0, want)
	if n := m.count(`serving \(master pid`); n != 0 {
		t.Error("the master said it serves")
	}
}

// The same program in a reload: the reload fails, the old generation keeps
// serving.
func TestReloadToWorkerWithoutItsSocketFails(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "own-port-from-gen2", "--workers", "2", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	code, _, errs := ctl(t, m.env, "reload")
	if code != 1 || !strings.Contains(errs, "does not hold web=") || !strings.Contains(errs, "it closed fd 3") {
		t.Fatalf("reload: exit %d, %s; want exit 1 naming the socket the worker closed", code, errs)
	}
	assertServedBy(t, "tcp", addr, 1)
}

// A worker that hands its socket to a process it starts and closes its own
// copy (sh -c 'server & exec 3>&-; wait') serves through that process: it
// counts as holding the socket.
func TestSocketHeldByADescendantCounts(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	m := startCommand(t, []string{"--env", roleEnv + "=silent", "--workers", "1", "--listen", "web=127.0.0.1:0", "--ready", "delay", "--ready-delay", "200ms"},
		"/bin/sh", "-c", `"$0" & exec 3>&-; wait`, self)
	roles.Use("silent")
	addr := m.listenAddr("web")
	m.waitReady(1)
	if _, err := get("tcp", addr, "/"); err != nil {
		t.Fatal(err)
	}
}

// Workers that report ready and then crash every time: after
// --max-restarts respawns of each slot within --restart-window the slots
// are given up, and the master says so (status, systemd, metrics) instead
// of "serving". A reload that works serves again.
func TestCrashLoopIsErrored(t *testing.T) {
	t.Parallel()
	sd := newFakeSystemd(t)
	dir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + dir, "NOTIFY_SOCKET=" + sd.path}
	self, _ := os.Executable()
	m := startCommandEnv(t, env, []string{"--env", roleEnv + "=crash-after-ready-gen2", "--workers", "2",
		"--listen", "web=127.0.0.1:0", "--max-restarts", "2", "--restart-window", "1m", "--metrics", "127.0.0.1:0"}, self)
	m.waitLine(0, `serving \(master pid`)
	addr := m.listenAddr("web")
	m.signal(syscall.SIGHUP)
	m.waitReady(2)
	// Each request kills the gen 2 worker that takes it.
	stop := make(chan struct{})
	hammered := make(chan struct{})
	go func() {
		defer close(hammered)
		for i := 0; i < 10000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// A short deadline: once nothing serves, a request waits in
			// the backlog for good.
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.SetDeadline(time.Now().Add(time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
				c.Read(make([]byte, 1))
				c.Close()
			}
		}
	}()
	m.waitLine(0, `errored: no worker of gen 2 is left; the sockets stay open`)
	close(stop)
	<-hammered
	sd.expectSkipping("", "STATUS=errored: no worker of gen 2 is left (2 restarts within 1m0s, then exit status 1); waiting for a reload")
	if n := m.count(`gen 2 worker \d \(pid \d+\) exited: exit status 1; given up after 2 restarts within 1m0s`); n != 2 {
		t.Errorf("%d slots given up, want 2", n)
	}
	st := statusOf(t, env)
	if st.State != "errored" || len(st.Errored) != 2 || len(st.Workers) != 0 || st.Generation != 2 {
		t.Errorf("status: state %q, %d errored slots, %d workers, gen %d; want errored, 2, 0, 2", st.State, len(st.Errored), len(st.Workers), st.Generation)
	}
	out := mustCtl(t, env, "status")
	if !strings.Contains(out, "generation 2 ERRORED") || !strings.Contains(out, "slot 1 given up") {
		t.Errorf("status:\n%s", out)
	}
	sm, _ := m.waitLine(0, `metrics on http://(\S+)/metrics`)
	murl := "http://" + sm[1] + "/metrics"
	if v, _ := metricValue(scrape(t, murl), "hotcluster_errored_slots", nil); v != 2 {
		t.Errorf("hotcluster_errored_slots = %v, want 2", v)
	}
	// The fix: gen 3 serves, and nothing is errored any more.
	if out := mustCtl(t, env, "reload"); !strings.Contains(out, "generation 3 ready") {
		t.Fatalf("reload: %s", out)
	}
	assertServedBy(t, "tcp", addr, 3)
	if st := statusOf(t, env); st.State != "serving" || len(st.Errored) != 0 {
		t.Errorf("after the fix: state %q, errored %v", st.State, st.Errored)
	}
}

// A worker of the new generation that dies while the traffic moves to it
// (here the move is held up by an idle connection the old generation
// accepted, which the quiet wait waits for): the reload fails, the
// traffic goes back to the old generation, which was never told to stop.
func TestWorkerDyingDuringCutOverFailsTheReload(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "exit-after-ready-gen2", "--workers", "2", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	code, _, errs := ctl(t, m.env, "reload")
	if code != 1 || !strings.Contains(errs, "exited as the traffic moved to its generation: exit status 1") {
		t.Fatalf("reload: exit %d, %s; want exit 1 naming the worker that died during the cut-over", code, errs)
	}
	assertServedBy(t, "tcp", addr, 1)
	if n := m.count(`gen 1 worker \d \(pid \d+\) drained`); n != 0 {
		t.Error("gen 1 was drained although gen 2 failed")
	}
}

// A program taken as ready by --ready-delay that dies soon after (nginx
// retrying its bind for 2.5 s) did not start: the master exits 1 with the
// reason rather than respawning it forever.
func TestFirstGenerationCrashingSoonAfterReadyExits(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "late-crash", "--workers", "1", "--listen", "web=127.0.0.1:0", "--ready", "delay", "--ready-delay", "100ms")
	if code := m.wait(); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	m.waitLine(0, `first generation failed: worker 0 \(pid \d+\) exited \S+ after gen 1 was taken as ready: exit status 1`)
	m.waitLine(0, `bind: address already in use`) // its last words are quoted
}

// A worker that stops answering (SIGSTOP here; a deadlock alike) misses
// its watchdog: a replacement starts in its slot, and once it is ready the
// hung worker is aborted. Requests keep being served.
func TestHungWorkerIsReplaced(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "watchdog-pinger", "--workers", "2", "--listen", "web=127.0.0.1:0", "--watchdog", "300ms")
	addr := m.listenAddr("web")
	hung := workerPID(m.master, 1, 0)
	events := watchEvents(t, m.env)
	syscall.Kill(hung, syscall.SIGSTOP)
	events.next(func(e control.Event) bool { return e.Event == "hung" && e.PID == hung })
	m.waitLine(0, fmt.Sprintf(`gen 1 worker 0 \(pid %d\): hung: sent no WATCHDOG=1 for 300ms \(--watchdog\); replacing it with pid \d+`, hung))
	// SIGABRT: a Go program prints its goroutines and exits 2.
	m.waitLine(0, fmt.Sprintf(`gen 1 worker 0 \(pid %d\) drained: exit status 2`, hung))
	res, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Clients: 2, MaxRequests: 200})
	if err != nil {
		t.Fatal(err)
	}
	assertNoFailures(t, res)
	st := statusOf(t, m.env)
	for _, w := range st.Workers {
		if w.PID == hung || w.State != "ready" {
			t.Errorf("after the replacement: %+v", w)
		}
	}
}

// A stopped worker reads as stopped in status, not as ready.
func TestStoppedWorkerShowsInStatus(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0")
	pid := workerPID(m.master, 1, 0)
	syscall.Kill(pid, syscall.SIGSTOP)
	defer syscall.Kill(pid, syscall.SIGCONT)
	eventually(t, "the worker stops", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err == nil && strings.Contains(string(b), ") T ")
	})
	st := statusOf(t, m.env)
	if len(st.Workers) != 1 || st.Workers[0].State != "stopped" {
		t.Errorf("status of a SIGSTOPped worker: %+v", st.Workers)
	}
}

// roleOwnPort ignores the socket it was given, binds one of its own, and
// says it is ready, as a server that does not speak socket activation
// does under a tool that guesses readiness. child.Ready closes the
// untaken fd 3.
func roleOwnPort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	child.Ready()
	return serveUntilTerm(ln)
}

func roleOwnPortFromGen2() int {
	if child.Generation() >= 2 {
		return roleOwnPort()
	}
	return roleLib()
}

// roleCrashAfterReadyGen2 serves in generation 1; in generation 2 it
// reports ready and dies at its first request, each time it is started
// (a bug on a path readiness does not take); from generation 3 (the fix)
// it serves again.
func roleCrashAfterReadyGen2() int {
	if child.Generation() != 2 {
		return roleLib()
	}
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	child.Ready()
	c, err := ln.Accept()
	if err == nil {
		c.Close()
	}
	return 1
}

// roleExitAfterReadyGen2 serves in generation 1; in generation 2 it
// reports ready and exits 200ms later.
func roleExitAfterReadyGen2() int {
	if child.Generation() != 2 {
		return roleLib()
	}
	if _, err := child.Listen("", "tcp", "127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	child.Ready()
	time.Sleep(200 * time.Millisecond) // its own short life
	return 1
}

// roleLateCrash takes fd 3 and speaks no protocol, like nginx, and gives
// up 300ms later the way nginx gives up its bind retries.
func roleLateCrash() int {
	f := os.NewFile(3, "listener")
	defer f.Close()
	time.Sleep(300 * time.Millisecond) // the program's own retries
	fmt.Fprintln(os.Stderr, "bind: address already in use")
	return 1
}

// roleWatchdogPinger is the library worker that sends WATCHDOG=1 at a
// quarter of its interval from its serving loop.
func roleWatchdogPinger() int {
	reportContract()
	every := child.WatchdogInterval() / 4
	if every <= 0 {
		fmt.Fprintln(os.Stderr, "no WATCHDOG_USEC")
		return 1
	}
	go func() {
		for range time.Tick(every) {
			child.Notify("WATCHDOG=1")
		}
	}()
	return roleLibServe()
}

// serveUntilTerm serves hello on ln until SIGTERM.
func serveUntilTerm(ln net.Listener) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	go srv.Serve(ln)
	<-term
	srv.Shutdown(context.Background())
	return 0
}

func init() {
	roles.Register("own-port", roleOwnPort)
	roles.Register("own-port-from-gen2", roleOwnPortFromGen2)
	roles.Register("crash-after-ready-gen2", roleCrashAfterReadyGen2)
	roles.Register("late-crash", roleLateCrash)
	roles.Register("exit-after-ready-gen2", roleExitAfterReadyGen2)
	roles.Register("watchdog-pinger", roleWatchdogPinger)
}
