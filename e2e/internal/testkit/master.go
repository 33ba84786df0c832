// Package testkit starts hotcluster masters for the real-process tests (e2e
// and e2e/chaos) and waits on what they do: their typed event stream (the
// control socket's `events`) once they serve, their output lines before.
//
// A Master runs in a process group of its own, which the masters an
// upgrade starts share, so that cleanup reaches them all: SIGTERM first, as
// a user would stop it, and SIGKILL to the group only if it does not exit
// in time. Every wait has a deadline.
package testkit

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultTimeout bounds every wait unless Options say otherwise.
const DefaultTimeout = 60 * time.Second

// Options configure Start. Zero fields take the defaults.
type Options struct {
	// Timeout bounds every wait of the master's; DefaultTimeout if zero.
	Timeout time.Duration
	// Stdout also collects the master's standard output (default: only its
	// standard error, where its log goes; stdout goes to the test's).
	Stdout bool
	// AfterStop runs in cleanup once the master has exited, before its
	// output is logged on failure: extra checks (chaos: nothing of the
	// group is left).
	AfterStop func(m *Master)
	// KeepOutput, when set, is called in cleanup with the whole output.
	KeepOutput func(lines []string)
	// MaxLogged bounds the lines logged when the test failed (0: all).
	MaxLogged int
}

// Master is a hotcluster master a test started.
type Master struct {
	T   *testing.T
	Cmd *exec.Cmd
	PID int
	// Done is closed once the master was waited for; Err is its exit then.
	Done chan struct{}
	Err  error
	// EOF is closed once every process holding the master's output (after
	// an upgrade, the masters that followed it) has exited.
	EOF chan struct{}

	opt Options

	mu    sync.Mutex
	lines []string
	times []time.Time   // when each line was read
	cond  chan struct{} // closed and replaced on each new line

	events *follower // the control socket's events, once followed
}

// Start runs cmd (a master, maybe behind a wrapper that execs it) in a
// process group of its own, collects its output, and stops it in the
// test's cleanup.
func Start(t *testing.T, cmd *exec.Cmd, opt Options) *Master {
	t.Helper()
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A pipe of our own rather than StderrPipe, so that the master is
	// waited for (and reaped) when it exits, not when the last process
	// holding its output does.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if opt.Stdout {
		cmd.Stdout = w
	} else if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	m := &Master{T: t, Cmd: cmd, PID: cmd.Process.Pid, Done: make(chan struct{}), EOF: make(chan struct{}), cond: make(chan struct{}), opt: opt}
	go func() {
		m.Err = cmd.Wait()
		close(m.Done)
	}()
	go m.read(r)
	t.Cleanup(m.cleanup)
	return m
}

func (m *Master) read(r *os.File) {
	defer close(m.EOF)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m.mu.Lock()
		m.lines = append(m.lines, sc.Text())
		m.times = append(m.times, time.Now())
		close(m.cond)
		m.cond = make(chan struct{})
		m.mu.Unlock()
	}
}

// cleanup stops the masters gracefully, as a user would, and kills the
// group only if they do not exit in time.
func (m *Master) cleanup() {
	t := m.T
	if m.events != nil {
		m.events.stop()
	}
	select {
	case <-m.EOF:
	default:
		syscall.Kill(-m.PID, syscall.SIGTERM)
		select {
		case <-m.EOF:
		case <-time.After(m.opt.Timeout / 2):
			t.Errorf("master still running %s after SIGTERM; killing its process group", m.opt.Timeout/2)
			syscall.Kill(-m.PID, syscall.SIGKILL)
			<-m.EOF
		}
	}
	<-m.Done
	if m.opt.AfterStop != nil {
		m.opt.AfterStop(m)
	}
	lines := m.Output()
	if m.opt.KeepOutput != nil {
		m.opt.KeepOutput(lines)
	}
	if t.Failed() {
		if n := m.opt.MaxLogged; n > 0 && len(lines) > n {
			lines = append([]string{fmt.Sprintf("… %d lines before", len(lines)-n)}, lines[len(lines)-n:]...)
		}
		t.Logf("master output:\n%s", strings.Join(lines, "\n"))
	}
}

// Timeout is what bounds the master's waits.
func (m *Master) Timeout() time.Duration { return m.opt.Timeout }

// Output returns the lines so far.
func (m *Master) Output() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.lines...)
}

// Next is the index of the next output line: WaitLine(m.Next(), …) waits
// for a line printed from now on.
func (m *Master) Next() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.lines)
}

// LineTime returns when line i (an index WaitLine returned, minus one) was
// read.
func (m *Master) LineTime(i int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.times[i]
}

// WaitLine waits for an output line matching re at index from or later,
// and returns its submatches and the index after it; the test fails if the
// master exits first or the deadline passes.
func (m *Master) WaitLine(from int, re string) ([]string, int) {
	m.T.Helper()
	sm, next, err := m.FindLine(from, regexp.MustCompile(re), m.opt.Timeout)
	if err != nil {
		m.T.Fatal(err)
	}
	return sm, next
}

// FindLine is WaitLine that returns the failure instead, waiting at most
// within.
func (m *Master) FindLine(from int, rx *regexp.Regexp, within time.Duration) ([]string, int, error) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		for ; from < len(m.lines); from++ {
			if sm := rx.FindStringSubmatch(m.lines[from]); sm != nil {
				m.mu.Unlock()
				return sm, from + 1, nil
			}
		}
		cond := m.cond
		m.mu.Unlock()
		select {
		case <-cond:
		case <-m.EOF:
			// Every line is in: look once more, then give up.
			m.mu.Lock()
			n := len(m.lines)
			m.mu.Unlock()
			if from == n {
				<-m.Done
				return nil, from, fmt.Errorf("master exited (%v) before printing a line matching %q", m.Err, rx)
			}
		case <-deadline.C:
			return nil, from, fmt.Errorf("no line matching %q within %s", rx, within)
		}
	}
}

// Count returns how many output lines from index from on match re.
func (m *Master) Count(from int, re string) int {
	rx := regexp.MustCompile(re)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, l := range m.lines[min(from, len(m.lines)):] {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

// Signal sends sig to the master (not its group).
func (m *Master) Signal(sig syscall.Signal) {
	m.T.Helper()
	if err := syscall.Kill(m.PID, sig); err != nil {
		m.T.Fatalf("signal master: %v", err)
	}
}

// Exited reports whether the master process has exited.
func (m *Master) Exited() bool {
	select {
	case <-m.Done:
		return true
	default:
		return false
	}
}

// Wait waits for the master to exit and returns its exit code.
func (m *Master) Wait() int {
	m.T.Helper()
	select {
	case <-m.Done:
	case <-time.After(m.opt.Timeout):
		m.T.Fatalf("master still running after %s", m.opt.Timeout)
	}
	if m.Err == nil {
		return 0
	}
	if ee, ok := m.Err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	m.T.Fatalf("master: %v", m.Err)
	return -1
}
