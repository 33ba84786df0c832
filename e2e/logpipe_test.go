package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// pipedMaster is a master whose stdout and stderr go into one pipe, as
// `hotcluster run … 2>&1 | reader` makes them, and whose reader the test
// controls.
type pipedMaster struct {
	cmd  *exec.Cmd
	out  *bufio.Reader
	r    *os.File
	env  []string // for its clients
	done chan struct{}
	err  error
}

func startPiped(t *testing.T, role string, args ...string) *pipedMaster {
	t.Helper()
	self, _ := os.Executable()
	ctlDir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + ctlDir}
	full := append([]string{"hotcluster", "run", "--log-time=false", "--env", roleEnv + "=" + role}, args...)
	cmd := exec.Command(self)
	cmd.Args = append(append(full, "--"), self)
	cmd.Env = append(append(os.Environ(), masterEnv(t)...), env...)
	noteRoles(cmd.Args, cmd.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := &pipedMaster{cmd: cmd, out: bufio.NewReaderSize(r, 1<<20), r: r, env: env, done: make(chan struct{})}
	go func() { m.err = cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		select {
		case <-m.done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-m.done
		}
		r.Close()
	})
	return m
}

// readUntil reads lines until one matches re, and returns its submatches.
func (m *pipedMaster) readUntil(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	m.r.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		line, err := m.out.ReadString('\n')
		if err != nil {
			t.Fatalf("master output ended (%v) before a line matching %q", err, re)
		}
		if sm := rx.FindStringSubmatch(line); sm != nil {
			return sm
		}
	}
}

// exitCode waits for the master and returns its exit status, "signal X"
// if a signal killed it.
func (m *pipedMaster) exitCode(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case <-m.done:
	case <-time.After(within):
		t.Fatalf("master still running %s after SIGTERM", within)
	}
	if m.err == nil {
		return "exit 0"
	}
	if ee, ok := m.err.(*exec.ExitError); ok {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			return "signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	return m.err.Error()
}

// `hotcluster run … 2>&1 | head -n 5`: once the reader has gone, the
// master neither dies of SIGPIPE (taking its workers with it) nor stops
// serving; it reloads, counts the lines it could not write, and exits 0.
func TestMasterSurvivesClosedLogPipe(t *testing.T) {
	t.Parallel()
	m := startPiped(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0")
	addr := m.readUntil(t, `listening on (\S+) as web `)[1]
	m.readUntil(t, `serving \(master pid`)
	m.r.Close() // head has read its lines and exits

	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	for gen := 2; gen <= 3; gen++ {
		out := mustCtl(t, m.env, "reload")
		if !strings.Contains(out, fmt.Sprintf("generation %d ready", gen)) {
			t.Fatalf("reload: %s", out)
		}
	}
	assertNoFailures(t, stop())
	if st := statusOf(t, m.env); st.LogDropped == 0 || st.Generation != 3 {
		t.Errorf("status: generation %d, %d log lines dropped; want generation 3 and the lost lines counted", st.Generation, st.LogDropped)
	}
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGTERM)
	if got := m.exitCode(t, testTimeout); got != "exit 0" {
		t.Fatalf("master ended with %s after SIGTERM, want exit 0", got)
	}
}

// A reader that stops reading (a stalled terminal, a stuck collector):
// with a worker printing far more than a pipe holds, the master still
// answers its control socket, reloads and stops on SIGTERM, dropping the
// lines it cannot write.
func TestMasterNotStalledByLogReader(t *testing.T) {
	t.Parallel()
	m := startPiped(t, "chatty", "--workers", "2", "--listen", "web=127.0.0.1:0", "--drain-timeout", "5s")
	addr := m.readUntil(t, `listening on (\S+) as web `)[1]
	m.readUntil(t, `serving \(master pid`)
	// From now on nobody reads: the pipe (64 KiB) fills with the workers'
	// lines at once.
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	for gen := 2; gen <= 3; gen++ {
		out := mustCtl(t, m.env, "reload")
		if !strings.Contains(out, fmt.Sprintf("generation %d ready", gen)) {
			t.Fatalf("reload: %s", out)
		}
	}
	assertNoFailures(t, stop())
	if st := statusOf(t, m.env); st.LogDropped == 0 {
		t.Error("status counts no dropped log line although nobody read the output")
	}
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGTERM)
	if got := m.exitCode(t, testTimeout); got != "exit 0" {
		t.Fatalf("master ended with %s after SIGTERM, want exit 0", got)
	}
}

// roleChatty is a worker that prints, at start, about 2 MiB: more than a
// pipe holds, and with a few workers more than the master queues.
func roleChatty() int {
	line := strings.Repeat("chatter ", 16)
	for i := 0; i < 16384; i++ {
		fmt.Println(i, line)
	}
	return roleLibServe()
}

func init() { roles.Register("chatty", roleChatty) }
