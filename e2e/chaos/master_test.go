//go:build chaos

package chaos

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// master is a hotcluster master started by a test, in a process group of
// its own, with the test binary as its worker command.
type master struct {
	t     *testing.T
	cmd   *exec.Cmd
	pid   int
	nonce string // in every worker's argv: see groupPIDs
	// modeFile holds the mode the next worker reads at start.
	modeFile string
	addr     string // the listener's address, once known

	done chan struct{} // closed once the master was waited for
	err  error         // its exit, once done
	eof  chan struct{} // closed once its output pipe reached EOF

	mu    sync.Mutex
	lines []string
	times []time.Time   // when each line was read
	cond  chan struct{} // closed and replaced on each new line
}

// startMaster runs `hotcluster run --listen web=127.0.0.1:0 -n WORKERS ARGS
// -- TESTBINARY chaos-worker NONCE`, waits until it serves and returns it.
// Cleanup stops it with SIGTERM (SIGKILL to its group if it does not exit in
// time) and then checks that no process of its group is left.
func startMaster(t *testing.T, workers int, mode string, args ...string) *master {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var nb [8]byte
	if _, err := rand.Read(nb[:]); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	m := &master{
		t:        t,
		nonce:    "chaos-" + hex.EncodeToString(nb[:]),
		modeFile: filepath.Join(tmp, "mode"),
		done:     make(chan struct{}),
		eof:      make(chan struct{}),
		cond:     make(chan struct{}),
	}
	m.setMode(mode)
	full := []string{"run", "--log-time=false", "--listen", "web=127.0.0.1:0", "--workers", strconv.Itoa(workers),
		"--env", roleEnv + "=worker", "--env", modeFileEnv + "=" + m.modeFile}
	full = append(full, args...)
	full = append(full, "--", self, "chaos-worker", m.nonce)
	cmd := exec.Command(hotclusterBin, full...)
	// A private TMPDIR for the notify sockets; without the race detector's
	// one-second sleep at exit, which would slow every drained worker.
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "XDG_RUNTIME_DIR="+tmp, "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A pipe of our own rather than StderrPipe, so that the master is
	// reaped when it exits, not when the last holder of its output does.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	m.cmd, m.pid = cmd, cmd.Process.Pid
	go func() {
		m.err = cmd.Wait()
		close(m.done)
	}()
	go m.read(r)
	t.Cleanup(m.cleanup)
	sm, _ := m.waitLine(0, `listening on (\S+) as web `)
	m.addr = sm[1]
	m.waitLine(0, `serving \(master pid \d+\)`)
	return m
}

func (m *master) read(r *os.File) {
	defer close(m.eof)
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

// cleanup stops the master if it still runs, then requires that every
// process of its group is gone.
func (m *master) cleanup() {
	t := m.t
	select {
	case <-m.done:
	default:
		syscall.Kill(m.pid, syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(*flagTimeout):
			t.Errorf("master still running %s after SIGTERM; killing its process group", *flagTimeout)
			syscall.Kill(-m.pid, syscall.SIGKILL)
			<-m.done
		}
	}
	if left := m.waitGroupGone(*flagTimeout); len(left) > 0 {
		t.Errorf("processes of the group still alive %s after the master exited: %v; killing them", *flagTimeout, left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	select {
	case <-m.eof:
	case <-time.After(*flagTimeout):
		t.Errorf("the master's output still open %s after it exited", *flagTimeout)
	}
	if *flagLogDir != "" {
		name := filepath.Join(*flagLogDir, strings.ReplaceAll(t.Name(), "/", "_")+".log")
		if err := os.WriteFile(name, []byte(strings.Join(m.output(), "\n")+"\n"), 0o644); err != nil {
			t.Errorf("keep the master's output: %v", err)
		}
	}
	if t.Failed() {
		lines := m.output()
		if len(lines) > 300 {
			lines = append([]string{fmt.Sprintf("… %d lines before", len(lines)-300)}, lines[len(lines)-300:]...)
		}
		t.Logf("master output:\n%s", strings.Join(lines, "\n"))
	}
}

// waitGroupGone waits up to d for every process carrying the master's nonce
// to vanish, and returns those still there.
func (m *master) waitGroupGone(d time.Duration) []int {
	var left []int
	poll(d, func() bool {
		left = groupPIDs(m.nonce)
		return len(left) == 0
	})
	return left
}

func (m *master) setMode(mode string) {
	m.t.Helper()
	// Written aside and renamed: a worker starting now reads the old mode
	// or the new one, never half of it.
	tmp := m.modeFile + ".new"
	if err := os.WriteFile(tmp, []byte(mode+"\n"), 0o644); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Rename(tmp, m.modeFile); err != nil {
		m.t.Fatal(err)
	}
}

func (m *master) output() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.lines...)
}

// lineTime returns when line i (an index waitLine returned minus one) was
// read.
func (m *master) lineTime(i int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.times[i]
}

// next is the index of the next output line: waitLine(m.next(), …) waits for
// a line printed from now on.
func (m *master) next() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.lines)
}

// waitLine waits for an output line matching re at index from or later and
// returns its submatches and the index after it.
func (m *master) waitLine(from int, re string) ([]string, int) {
	m.t.Helper()
	sm, next, err := m.findLine(from, regexp.MustCompile(re), *flagTimeout)
	if err != nil {
		m.t.Fatal(err)
	}
	return sm, next
}

func (m *master) findLine(from int, rx *regexp.Regexp, within time.Duration) ([]string, int, error) {
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
		case <-m.eof:
			m.mu.Lock()
			n := len(m.lines)
			m.mu.Unlock()
			if from == n {
				<-m.done
				return nil, from, fmt.Errorf("master exited (%v) before printing a line matching %q", m.err, rx)
			}
		case <-deadline.C:
			return nil, from, fmt.Errorf("no line matching %q within %s", rx, within)
		}
	}
}

// count returns how many output lines from index from on match re.
func (m *master) count(from int, re string) int {
	rx := regexp.MustCompile(re)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, l := range m.lines[from:] {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

// upWorkers returns the PIDs that generation gen's workers reported at
// start, from output index from on, by PID with their slot.
func (m *master) upWorkers(from, gen int) map[int]int {
	rx := regexp.MustCompile(fmt.Sprintf(`^\[g%d w\d+\] %s pid=(\d+) gen=\d+ slot=(\d+)`, gen, upLine))
	m.mu.Lock()
	defer m.mu.Unlock()
	pids := map[int]int{}
	for _, l := range m.lines[from:] {
		if sm := rx.FindStringSubmatch(l); sm != nil {
			pid, _ := strconv.Atoi(sm[1])
			slot, _ := strconv.Atoi(sm[2])
			pids[pid] = slot
		}
	}
	return pids
}

// genOf returns the generation whose worker reported pid at start, or 0.
func (m *master) genOf(pid int) int {
	rx := regexp.MustCompile(fmt.Sprintf(`^\[g(\d+) w\d+\] %s pid=%d `, upLine, pid))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.lines) - 1; i >= 0; i-- {
		if sm := rx.FindStringSubmatch(m.lines[i]); sm != nil {
			g, _ := strconv.Atoi(sm[1])
			return g
		}
	}
	return 0
}

func (m *master) signal(sig syscall.Signal) {
	m.t.Helper()
	if err := syscall.Kill(m.pid, sig); err != nil {
		m.t.Fatalf("signal master: %v", err)
	}
}

// exited reports whether the master process has exited.
func (m *master) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// reload sends SIGHUP and waits until generation gen is ready and old, the
// one it replaces, drained, from output index from on; it returns the index
// after the later of both lines.
func (m *master) reload(from, gen, old int) int {
	m.t.Helper()
	m.signal(syscall.SIGHUP)
	_, a := m.waitLine(from, fmt.Sprintf(`^hotcluster: gen %d ready in `, gen))
	_, b := m.waitLine(from, fmt.Sprintf(`^hotcluster: gen %d drained$`, old))
	return max(a, b)
}
