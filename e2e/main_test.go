package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
const testTimeout = 60 * time.Second

// master is a hotcluster master started by a test.
type master struct {
	t    *testing.T
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed when the process was waited for
	// eof is closed when every process holding the master's stderr (after an
	// upgrade, the masters that followed it) has exited.
	eof chan struct{}
	err error // its exit, once done

	mu    sync.Mutex
	lines []string
	cond  chan struct{} // closed and replaced on each new line
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
// temporary directory for what it makes (notify sockets, build outputs),
// gone with the test even when the master was killed. The race detector
// would sleep a second at each exit, delaying every drained worker.
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
	// Its own process group, which the masters that an upgrade starts
	// share: cleanup stops them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A pipe of our own rather than StderrPipe, so that the master is
	// waited for (and reaped) when it exits, not when the last process
	// holding its stderr does.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// The workers' stdout is the master's: one pipe for both, as 2>&1.
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	m := &master{t: t, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), eof: make(chan struct{}), cond: make(chan struct{})}
	go func() {
		m.err = cmd.Wait()
		close(m.done)
	}()
	go func() {
		defer close(m.eof)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			m.mu.Lock()
			m.lines = append(m.lines, sc.Text())
			close(m.cond)
			m.cond = make(chan struct{})
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		// A graceful stop first, so that the masters clean up as a user's
		// would; killed only if they do not exit in time.
		select {
		case <-m.eof:
		default:
			syscall.Kill(-m.pid, syscall.SIGTERM)
			select {
			case <-m.eof:
			case <-time.After(testTimeout / 2):
				t.Errorf("master still running %s after SIGTERM; killing it", testTimeout/2)
				syscall.Kill(-m.pid, syscall.SIGKILL)
				<-m.eof
			}
		}
		<-m.done
		if t.Failed() {
			t.Logf("master output:\n%s", strings.Join(m.output(), "\n"))
		}
	})
	return m
}

func (m *master) output() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.lines...)
}

// waitLine waits for an output line matching re, searching from line
// index from, and returns its submatches and the index after it.
func (m *master) waitLine(from int, re string) ([]string, int) {
	m.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		for i := from; i < len(m.lines); i++ {
			if sm := rx.FindStringSubmatch(m.lines[i]); sm != nil {
				m.mu.Unlock()
				return sm, i + 1
			}
		}
		cond := m.cond
		m.mu.Unlock()
		select {
		case <-cond:
		case <-m.eof:
			// Every line is in: check them once more, then give up.
			lines := m.output()
			for i := from; i < len(lines); i++ {
				if sm := rx.FindStringSubmatch(lines[i]); sm != nil {
					return sm, i + 1
				}
			}
			<-m.done
			m.t.Fatalf("master exited (%v) before printing a line matching %q", m.err, re)
		case <-deadline.C:
			m.t.Fatalf("no line matching %q within %s", re, testTimeout)
		}
	}
}

// count returns how many output lines match re.
func (m *master) count(re string) int {
	rx := regexp.MustCompile(re)
	n := 0
	for _, l := range m.output() {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

// listenAddr waits for the master to report where listener name listens.
func (m *master) listenAddr(name string) string {
	m.t.Helper()
	sm, _ := m.waitLine(0, `listening on (\S+) as `+regexp.QuoteMeta(name)+` `)
	return sm[1]
}

func (m *master) signal(sig syscall.Signal) {
	m.t.Helper()
	if err := syscall.Kill(m.pid, sig); err != nil {
		m.t.Fatalf("signal master: %v", err)
	}
}

// wait waits for the master to exit and returns its exit code.
func (m *master) wait() int {
	m.t.Helper()
	select {
	case <-m.done:
	case <-time.After(testTimeout):
		m.t.Fatalf("master still running after %s", testTimeout)
	}
	if m.err == nil {
		return 0
	}
	if ee, ok := m.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	m.t.Fatalf("master: %v", m.err)
	return -1
}

// reload sends SIGHUP and waits until generation gen serves and the one
// before it has drained.
func (m *master) reload(gen int) {
	m.t.Helper()
	m.signal(syscall.SIGHUP)
	m.waitLine(0, fmt.Sprintf(`gen %d ready in`, gen))
	m.waitLine(0, fmt.Sprintf(`gen %d drained`, gen-1))
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
