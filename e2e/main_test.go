package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/e2e/internal/testkit"
	"github.com/hotcluster/hotcluster/internal/cli"
	"github.com/hotcluster/hotcluster/internal/testroles"
	"github.com/hotcluster/hotcluster/workers"
)

// The test binary plays three parts, chosen by its environment: the
// LISTEN_PID shim (as the real binary does), a hotcluster master
// (HOTCLUSTER_TEST_ROLE=master, arguments as for hotcluster), and a worker
// role from the roles map (see roles_test.go).
const roleEnv = testroles.Env

func TestMain(m *testing.M) {
	if workers.IsShim() {
		os.Exit(workers.ExecShim())
	}
	switch role := os.Getenv(roleEnv); role {
	case "":
		// The suite takes 4 to 5 minutes on a quiet 2-core machine and
		// twice that on a busy one: run it with -timeout 30m (README.md).
		// Raising the binary's own -test.timeout here would not do: go
		// test itself kills the binary a minute after its -timeout.
		code := m.Run()
		if code == 0 {
			code = roles.CheckUsed()
		}
		os.Exit(code)
	case "master":
		os.Exit(cli.Main(os.Args))
	default:
		code, _ := roles.Play()
		os.Exit(code)
	}
}

// testTimeout bounds every wait in these tests.
const testTimeout = testkit.DefaultTimeout

// master is a hotcluster master started by a test (see package testkit),
// with the names these tests use.
type master struct {
	*testkit.Master
	t   *testing.T
	pid int
	// done is closed once the master was waited for; err() is its exit.
	done <-chan struct{}
	// eof is closed when every process holding the master's stderr (after
	// an upgrade, the masters that followed it) has exited.
	eof <-chan struct{}
}

// startMaster runs `hotcluster run ARGS` with the test binary as master and
// as the worker command (role given by workerRole).
func startMaster(t *testing.T, workerRole string, args ...string) *master {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startCommand(t, append([]string{"--env", roleEnv + "=" + workerRole}, args...), self)
}

// startCommand runs `hotcluster run ARGS -- COMMAND` with the test binary as
// master.
func startCommand(t *testing.T, args []string, command ...string) *master {
	t.Helper()
	return startCommandEnv(t, nil, args, command...)
}

// startCommandEnv is startCommand with env added to the master's
// environment.
func startCommandEnv(t *testing.T, env []string, args []string, command ...string) *master {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Without times, so that the tests' patterns may start at a line's
	// start; the tests of timestamps give --log-time, which wins.
	full := append([]string{"hotcluster", "run", "--log-time=false"}, args...)
	full = append(append(full, "--"), command...)
	cmd := exec.Command(self)
	cmd.Args = full
	cmd.Env = append(append(os.Environ(), masterEnv(t)...), env...)
	return startMasterCmd(t, cmd)
}

// masterEnv is what every test master gets: its role, and a private
// temporary directory for what it makes (notify sockets, build outputs,
// its control socket), gone with the test even when the master was killed.
// The race detector would sleep a second at each exit, delaying every
// drained worker.
func masterEnv(t *testing.T) []string {
	tmp := t.TempDir()
	return []string{roleEnv + "=master", "GORACE=atexit_sleep_ms=0", "TMPDIR=" + tmp, "XDG_RUNTIME_DIR=" + tmp}
}

// noteRoles records the worker roles named in a master's command line
// and environment, for roles.CheckUsed.
func noteRoles(args, env []string) {
	for _, s := range append(append([]string(nil), args...), env...) {
		if _, v, ok := strings.Cut(s, roleEnv+"="); ok && v != "master" {
			roles.Use(v)
		}
	}
}

// startMasterCmd starts cmd, a master (maybe behind a wrapper that execs
// it), in its own process group, and collects its output.
func startMasterCmd(t *testing.T, cmd *exec.Cmd) *master {
	t.Helper()
	noteRoles(cmd.Args, cmd.Env)
	// The workers' stdout is the master's: one pipe for both, as 2>&1.
	km := testkit.Start(t, cmd, testkit.Options{Stdout: true})
	return &master{Master: km, t: t, pid: km.PID, done: km.Done, eof: km.EOF}
}

func (m *master) output() []string { return m.Output() }

// waitLine waits for an output line matching re, searching from line
// index from, and returns its submatches and the index after it.
func (m *master) waitLine(from int, re string) ([]string, int) {
	m.t.Helper()
	return m.WaitLine(from, re)
}

// count returns how many output lines match re.
func (m *master) count(re string) int { return m.Count(0, re) }

// listenAddr waits for the master to report where listener name listens.
func (m *master) listenAddr(name string) string {
	m.t.Helper()
	sm, _ := m.waitLine(0, `listening on (\S+) as `+regexp.QuoteMeta(name)+` `)
	return sm[1]
}

func (m *master) signal(sig syscall.Signal) {
	m.t.Helper()
	m.Signal(sig)
}

// wait waits for the master to exit and returns its exit code.
func (m *master) wait() int {
	m.t.Helper()
	return m.Wait()
}

// follow subscribes to the master's event stream, through the control
// socket it said it serves, once: the typed events the waits below read.
func (m *master) follow() {
	m.t.Helper()
	sm, _ := m.waitLine(0, `control socket (\S+) \(hotcluster status`)
	m.Follow(sm[1])
}

// waitReady waits until generation gen serves: it did when the event
// stream began, or its reload-done comes.
func (m *master) waitReady(gen int) {
	m.t.Helper()
	m.follow()
	if int(m.Hello().Generation) >= gen {
		return
	}
	m.WaitEvent(0, fmt.Sprintf("gen %d ready", gen), testkit.Is("reload-done", uint64(gen)))
}

// waitDrained waits until every worker of generation gen has exited (its
// drained event). Call it once gen's turnover has begun after follow, as
// reload does.
func (m *master) waitDrained(gen int) {
	m.t.Helper()
	m.WaitEvent(0, fmt.Sprintf("gen %d drained", gen), testkit.Is("drained", uint64(gen)))
}

// reload sends SIGHUP and waits, on the event stream, until generation gen
// serves and the one before it has drained.
func (m *master) reload(gen int) {
	m.t.Helper()
	m.follow()
	m.signal(syscall.SIGHUP)
	m.WaitEvent(0, fmt.Sprintf("gen %d ready", gen), testkit.Is("reload-done", uint64(gen)))
	m.waitDrained(gen - 1)
}

// get makes one HTTP/1.1 request with a new connection and returns the body.
func get(network, addr, path string) (string, error) {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", path); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	s := string(b)
	if !strings.HasPrefix(s, "HTTP/1.1 200") {
		return "", fmt.Errorf("response %q", s)
	}
	_, body, _ := strings.Cut(s, "\r\n\r\n")
	return body, nil
}

var genRx = regexp.MustCompile(`gen=(\d+)`)

// alive reports whether pid still exists (a zombie counts as gone only once
// reaped, so callers poll).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// eventually polls cond, for state that only /proc or the kernel shows
// (a process gone, a file removed), until it holds or the test deadline
// passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("%s: still not true after %s", what, testTimeout)
		case <-tick.C:
		}
	}
}

func regexpQuote(s string) string { return regexp.QuoteMeta(s) }
