package reaper

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests make the test process a subreaper and run one Reaper at a
// time (a process has one): none of them is parallel.

// start runs one Reaper until the test ends and returns it and its log.
func start(t *testing.T) (*Reaper, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	r := New(Config{Log: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if r.Role() == None {
		t.Skip("the kernel refused PR_SET_CHILD_SUBREAPER (Linux 3.4 has it)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, lb
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// spawn starts sh -c script through fork (r.Fork, r.ForkWorker or none)
// with stdin and stdout on pipes of the test's, and env added.
type proc struct {
	pid   int
	stdin *os.File // closing it ends a `read`
	out   *bufio.Reader
}

func spawn(t *testing.T, fork func(func() (int, error)) (int, error), script string, env ...string) *proc {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	attr := &syscall.ProcAttr{
		Env:   append([]string{"PATH=/usr/bin:/bin"}, env...),
		Files: []uintptr{inR.Fd(), outW.Fd(), 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	pid, err := fork(func() (int, error) {
		pid, _, err := syscall.StartProcess("/bin/sh", []string{"sh", "-c", script}, attr)
		return pid, err
	})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		inW.Close()
		outR.Close()
		syscall.Kill(-pid, syscall.SIGKILL)
	})
	outR.SetReadDeadline(time.Now().Add(30 * time.Second))
	return &proc{pid: pid, stdin: inW, out: bufio.NewReader(outR)}
}

func (p *proc) line(t *testing.T) string {
	t.Helper()
	s, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read from pid %d: %v", p.pid, err)
	}
	return strings.TrimSpace(s)
}

func (p *proc) pidLine(t *testing.T) int {
	t.Helper()
	s := p.line(t)
	pid, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("want a PID, got %q", s)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// waitFor waits for pid and returns its status: it must still be there
// to be waited for, whoever else reaps orphans.
func waitFor(t *testing.T, pid int) syscall.WaitStatus {
	t.Helper()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("wait for pid %d: %v (its exit status was taken)", pid, err)
		}
		return ws
	}
}

// until polls cond, bounded, for what only /proc shows.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gone: no such process, not even a zombie.
func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, os.ErrNotExist)
}

func parentOf(pid int) int {
	st, err := readStat(pid)
	if err != nil {
		return -1
	}
	return st.ppid
}

// Children that exit at once, started through Fork while orphans come
// and go, keep their exit status for whoever waits for them.
func TestOwnChildrenKeepTheirExitStatus(t *testing.T) {
	r, _ := start(t)
	for i := 0; i < 100; i++ {
		// A child of its own group that exits at once, and with it an
		// orphan that exits at once too (its SIGCHLD makes the reaper
		// scan while the child is a zombie nobody waited for yet).
		p := spawn(t, r.Fork, "sleep 0 & exit 7")
		if ws := waitFor(t, p.pid); ws.ExitStatus() != 7 {
			t.Fatalf("child %d: %v, want exit status 7", i, ws)
		}
	}
}

// A child started without a group of its own (as tableflip starts the new
// master of an upgrade) is not taken for an orphan either.
func TestChildrenInOurGroupAreLeftAlone(t *testing.T) {
	start(t)
	for i := 0; i < 50; i++ {
		// An orphan beside it, so that the reaper scans.
		cmd := exec.Command("/bin/sh", "-c", "sleep 0 & exit 5")
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			t.Fatalf("run %d: %v, want exit status 5 (was it reaped by someone else?)", i, err)
		}
	}
}

// An orphan re-parented to the reaper is waited for when it exits: no
// zombie stays.
func TestOrphanIsReaped(t *testing.T) {
	r, lb := start(t)
	// The intermediate exits at once; the grandchild, in a session of its
	// own, waits for its stdin to close (as fd 3: sh gives a background
	// command /dev/null as stdin).
	p := spawn(t, r.Fork, `exec 3<&0; setsid sh -c 'echo $$; read x <&3; exit 3' & exit 0`)
	orphan := p.pidLine(t)
	waitFor(t, p.pid)
	until(t, "the orphan is re-parented to the reaper", func() bool {
		st, err := readStat(orphan)
		if err != nil {
			t.Fatalf("the orphan is gone before it was told to exit: %v", err)
		}
		return st.ppid == os.Getpid()
	})
	p.stdin.Close()
	until(t, "the orphan is reaped once it exits", func() bool { return gone(orphan) })
	if !strings.Contains(lb.String(), "pid "+strconv.Itoa(orphan)+" (sh)") || !strings.Contains(lb.String(), "exit status 3") {
		t.Errorf("log says nothing of the reaped orphan:\n%s", lb)
	}
}

// What a worker left in a session of its own is killed once the worker
// has exited, and the worker's own exit status is still its owner's.
func TestWorkersOrphanIsKilledWithIt(t *testing.T) {
	r, lb := start(t)
	p := spawn(t, func(f func() (int, error)) (int, error) { return r.ForkWorker(4, 1, f) },
		`setsid sleep 1000 & echo $!; read x; exit 9`, "HOTCLUSTER_GENERATION=4", "HOTCLUSTER_WORKER_ID=1")
	daemon := p.pidLine(t)
	until(t, "the daemon runs sleep", func() bool { st, _ := readStat(daemon); return st.comm == "sleep" })
	p.stdin.Close()
	// As the pool does: wait without reaping, tell the reaper, then reap.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.WorkerExited(ctx, p.pid)
	until(t, "the worker's orphan is killed and reaped", func() bool { return gone(daemon) })
	if ws := waitFor(t, p.pid); ws.ExitStatus() != 9 {
		t.Fatalf("worker: %v, want exit status 9", ws)
	}
	if want := "killed pid " + strconv.Itoa(daemon) + " (sleep), left by gen 4 worker 1 (pid " + strconv.Itoa(p.pid) + ")"; !strings.Contains(lb.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, lb)
	}
}

// An orphan of a live worker lives, and so does one that cannot be
// attributed (it cleared its environment and left the worker's group),
// until the reaper stops: then both are killed.
func TestStopKillsWhatIsLeft(t *testing.T) {
	lb := &logBuffer{}
	r := New(Config{Log: slog.New(slog.NewTextHandler(lb, nil))})
	if r.Role() == None {
		t.Skip("the kernel refused PR_SET_CHILD_SUBREAPER (Linux 3.4 has it)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	worker := func(gen uint64, slot int) func(func() (int, error)) (int, error) {
		return func(f func() (int, error)) (int, error) { return r.ForkWorker(gen, slot, f) }
	}
	// The subshell exits once it started both: they come back to the
	// reaper at once.
	w := spawn(t, worker(1, 0), `(setsid sleep 1000 & echo $!; env -i setsid sleep 1001 & echo $!); read x`,
		"HOTCLUSTER_GENERATION=1", "HOTCLUSTER_WORKER_ID=0")
	kept, anonymous := w.pidLine(t), w.pidLine(t)
	until(t, "both come back to the reaper", func() bool { return parentOf(kept) == os.Getpid() && parentOf(anonymous) == os.Getpid() })
	// Another worker's exit makes the reaper look at every orphan, and
	// return only once it has.
	other := spawn(t, worker(1, 1), `exit 0`, "HOTCLUSTER_GENERATION=1", "HOTCLUSTER_WORKER_ID=1")
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, other.pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	r.WorkerExited(wctx, other.pid)
	waitFor(t, other.pid)
	if gone(kept) || gone(anonymous) {
		t.Fatalf("an orphan of a live worker was killed (%d gone: %v, %d gone: %v)", kept, gone(kept), anonymous, gone(anonymous))
	}
	cancel()
	<-done
	until(t, "every orphan is gone once the reaper stopped", func() bool { return gone(kept) && gone(anonymous) })
	if !strings.Contains(lb.String(), "stopping: killed 2 processes the workers left") {
		t.Errorf("log:\n%s", lb)
	}
}

func TestParseStat(t *testing.T) {
	b := []byte("4242 (a) b (c) Z 1 4242 4242 0 -1 4227148 229 0 0 0 0 0 0 0 20 0 1 0 940451 0 0 18446744073709551615 0 0")
	st, err := parseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	if st.comm != "a) b (c" || st.state != 'Z' || st.ppid != 1 || st.pgrp != 4242 || st.start != 940451 {
		t.Fatalf("parseStat = %+v", st)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}
