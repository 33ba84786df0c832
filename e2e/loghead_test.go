package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/internal/testroles"
)

// `hotcluster run … 2>&1 | head -n 5` with a real head: head prints the
// first five lines and exits; the master, its output now a pipe without a
// reader, neither dies of SIGPIPE nor stalls: it serves, reloads twice
// under load without a failed request, counts the lines it lost, and
// exits 0 on SIGTERM.
func TestMasterSurvivesHead(t *testing.T) {
	t.Parallel()
	head := testroles.Tool(t, "head")
	self, _ := os.Executable()
	addr := "127.0.0.1:" + freePort(t)
	env := []string{"XDG_RUNTIME_DIR=" + t.TempDir()}
	m := exec.Command(self)
	m.Args = []string{"hotcluster", "run", "--log-time=false", "--env", roleEnv + "=lib", "--workers", "2",
		"--listen", "web=" + addr, "--", self}
	m.Env = append(append(os.Environ(), masterEnv(t)...), env...)
	noteRoles(m.Args, m.Env)
	m.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	m.Stdout, m.Stderr = w, w
	h := exec.Command(head, "-n", "5")
	var headOut bytes.Buffer
	h.Stdin, h.Stdout = r, &headOut
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	err = m.Start()
	r.Close()
	w.Close()
	if err != nil {
		h.Process.Kill()
		h.Wait()
		t.Fatal(err)
	}
	var merr error
	done := make(chan struct{})
	go func() { merr = m.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			syscall.Kill(-m.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	headDone := make(chan error, 1)
	go func() { headDone <- h.Wait() }()
	select {
	case err := <-headDone:
		if err != nil {
			t.Fatalf("head: %v", err)
		}
	case <-time.After(testTimeout):
		h.Process.Kill()
		<-headDone
		t.Fatalf("head did not get five lines within %s: %q", testTimeout, headOut.String())
	}
	if n := strings.Count(headOut.String(), "\n"); n != 5 || !strings.Contains(headOut.String(), "hotcluster: ") {
		t.Errorf("head printed %d lines, want five of the master's: %q", n, headOut.String())
	}

	eventually(t, "generation 1 serving", func() bool {
		code, out, _, err := ctlRun(env, "status", "--json")
		return err == nil && code == 0 && strings.Contains(out, `"state": "serving"`)
	})
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	for gen := 2; gen <= 3; gen++ {
		if out := mustCtl(t, env, "reload"); !strings.Contains(out, fmt.Sprintf("generation %d ready", gen)) {
			t.Fatalf("reload after head exited: %s", out)
		}
	}
	assertNoFailures(t, stop())
	if st := statusOf(t, env); st.LogDropped == 0 || st.Generation != 3 {
		t.Errorf("status: generation %d, %d log lines dropped; want generation 3 and the lost lines counted", st.Generation, st.LogDropped)
	}
	syscall.Kill(m.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		if merr != nil {
			t.Errorf("master after SIGTERM: %v; want exit 0", merr)
		}
	case <-time.After(testTimeout):
		t.Fatalf("master still running %s after SIGTERM", testTimeout)
	}
}

// `hotcluster run … | head -n 1`: only stdout goes away. The workers'
// stdout lines are dropped and counted from then on, and hotcluster says
// so once on stderr, which still works; the workers' stderr lines go on.
func TestMasterSaysStdoutWentAway(t *testing.T) {
	t.Parallel()
	head := testroles.Tool(t, "head")
	self, _ := os.Executable()
	addr := "127.0.0.1:" + freePort(t)
	env := []string{"XDG_RUNTIME_DIR=" + t.TempDir()}
	m := exec.Command(self)
	m.Args = []string{"hotcluster", "run", "--log-time=false", "--env", roleEnv + "=log-printer", "--workers", "1",
		"--listen", "web=" + addr, "--", self}
	m.Env = append(append(os.Environ(), masterEnv(t)...), env...)
	noteRoles(m.Args, m.Env)
	m.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	or, ow, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	er, ew, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h := exec.Command(head, "-n", "1")
	var headOut bytes.Buffer
	h.Stdin, h.Stdout = or, &headOut
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	m.Stdout, m.Stderr = ow, ew
	err = m.Start()
	or.Close()
	ow.Close()
	ew.Close()
	if err != nil {
		h.Process.Kill()
		h.Wait()
		er.Close()
		t.Fatal(err)
	}
	var merr error
	done := make(chan struct{})
	go func() { merr = m.Wait(); close(done) }()
	stderr := collect(t, er)
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			syscall.Kill(-m.Process.Pid, syscall.SIGKILL)
			<-done
		}
		<-stderr.eof
	})
	headDone := make(chan error, 1)
	go func() { headDone <- h.Wait() }()
	select {
	case err := <-headDone:
		if err != nil {
			t.Fatalf("head: %v", err)
		}
	case <-time.After(testTimeout):
		h.Process.Kill()
		<-headDone
		t.Fatalf("head got no line within %s", testTimeout)
	}
	if got := headOut.String(); got != "[g1 w0] out: hello from g1 w0\n" {
		t.Errorf("head printed %q, want the worker's first stdout line", got)
	}
	stderr.waitLine(`^hotcluster: serving \(master pid`)
	// Each request makes a stdout line, which now has nowhere to go.
	for i := 0; i < 5; i++ {
		if _, err := get("tcp", addr, fmt.Sprintf("/after-head-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	stderr.waitLine(`^hotcluster: log stdout: .*broken pipe; its lines are dropped`)
	eventually(t, "the stdout lines counted", func() bool {
		st := statusOf(t, env)
		return st.LogDropped >= 5
	})
	st := statusOf(t, env)
	var stdoutErr string
	if st.Log != nil {
		for _, o := range st.Log.Outputs {
			if o.Name == "stdout" {
				stdoutErr = o.Error
			}
		}
	}
	if !strings.Contains(stdoutErr, "broken pipe") {
		t.Errorf("status log outputs %+v: want stdout with its broken pipe", st.Log)
	}
	syscall.Kill(m.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		if merr != nil {
			t.Errorf("master after SIGTERM: %v; want exit 0", merr)
		}
	case <-time.After(testTimeout):
		t.Fatalf("master still running %s after SIGTERM", testTimeout)
	}
	<-stderr.eof
	if n := stderr.count(`log stdout: .*its lines are dropped`); n != 1 {
		t.Errorf("%d warnings about stdout, want one", n)
	}
	for _, want := range []string{"[g1 w0 err] err: trouble in g1 w0"} {
		if stderr.count(regexp.QuoteMeta(want)) != 1 {
			t.Errorf("stderr lacks %q", want)
		}
	}
}
