//go:build chaos

package chaos

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/e2e/internal/testkit"
)

// master is a hotcluster master started by a test (package testkit), in a
// process group of its own, with the test binary as its worker command.
type master struct {
	*testkit.Master
	t     *testing.T
	pid   int
	nonce string // in every worker's argv: see groupPIDs
	// modeFile holds the mode the next worker reads at start.
	modeFile string
	addr     string // the listener's address, once known
	done     <-chan struct{}
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
	m.Master = testkit.Start(t, cmd, testkit.Options{
		Timeout:    *flagTimeout,
		Stdout:     true,
		AfterStop:  m.afterStop,
		KeepOutput: m.keepOutput,
		MaxLogged:  300,
	})
	m.pid, m.done = m.PID, m.Done
	sm, _ := m.waitLine(0, `listening on (\S+) as web `)
	m.addr = sm[1]
	m.waitLine(0, `serving \(master pid \d+\)`)
	return m
}

// afterStop requires that every process of the master's group is gone
// once it exited, and that its output closed.
func (m *master) afterStop(*testkit.Master) {
	t := m.t
	if left := m.waitGroupGone(*flagTimeout); len(left) > 0 {
		t.Errorf("processes of the group still alive %s after the master exited: %v; killing them", *flagTimeout, left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// keepOutput writes the master's output to -chaos.logdir, if set.
func (m *master) keepOutput(lines []string) {
	if *flagLogDir == "" {
		return
	}
	name := filepath.Join(*flagLogDir, strings.ReplaceAll(m.t.Name(), "/", "_")+".log")
	if err := os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		m.t.Errorf("keep the master's output: %v", err)
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

func (m *master) output() []string         { return m.Output() }
func (m *master) lineTime(i int) time.Time { return m.LineTime(i) }
func (m *master) next() int                { return m.Next() }
func (m *master) count(from int, re string) int {
	return m.Count(from, re)
}
func (m *master) exited() bool { return m.Exited() }
func (m *master) signal(sig syscall.Signal) {
	m.t.Helper()
	m.Signal(sig)
}

// waitLine waits for an output line matching re at index from or later and
// returns its submatches and the index after it.
func (m *master) waitLine(from int, re string) ([]string, int) {
	m.t.Helper()
	return m.WaitLine(from, re)
}

// findLine is waitLine that returns the failure.
func (m *master) findLine(from int, rx *regexp.Regexp, within time.Duration) ([]string, int, error) {
	return m.FindLine(from, rx, within)
}

// upWorkers returns the PIDs that generation gen's workers reported at
// start, from output index from on, by PID with their slot.
func (m *master) upWorkers(from, gen int) map[int]int {
	rx := regexp.MustCompile(fmt.Sprintf(`^\[g%d w\d+\] %s pid=(\d+) gen=\d+ slot=(\d+)`, gen, upLine))
	pids := map[int]int{}
	for _, l := range m.Output()[from:] {
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
	lines := m.Output()
	for i := len(lines) - 1; i >= 0; i-- {
		if sm := rx.FindStringSubmatch(lines[i]); sm != nil {
			g, _ := strconv.Atoi(sm[1])
			return g
		}
	}
	return 0
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
