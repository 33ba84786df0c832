package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killWait bounds the wait for a process after SIGKILL, and for the app
// processes of a tool to disappear once the tool has stopped.
const killWait = 5 * time.Second

// proc is one process the driver started, in its own process group (so that
// a Ctrl-C in the terminal reaches only the driver, which then stops it). Its
// output goes to a log file, never a pipe. One goroutine waits for it.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error // written before done is closed
	stopped bool
}

func startProc(name, logDir, dir string, argv []string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// childEnv is the driver's environment without the variables of the socket
// activation and notify protocols, and with colours off.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LISTEN_") || strings.HasPrefix(k, "HOTCLUSTER_") || k == "NOTIFY_SOCKET" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "NO_COLOR=1")
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited returns an error describing the exit if the process has ended.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) exited: %s; log %s:\n%s", p.name, p.pid(), describeExit(p.waitErr), p.logPath, p.logTail(15))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group the
// process leads (pgid == pid, from Setpgid) and waits up to killWait. It is
// safe to call more than once; it returns an error if the process did not
// exit cleanly with status 0 after SIGTERM.
func (p *proc) stop(grace time.Duration) error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) had already exited: %s", p.name, p.pid(), describeExit(p.waitErr))
	default:
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		if p.waitErr != nil {
			return fmt.Errorf("%s (pid %d) after SIGTERM: %s", p.name, p.pid(), describeExit(p.waitErr))
		}
		return nil
	case <-t.C:
	}
	// Not reaped yet (done is open), so the pid and its group are still ours.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	k := time.NewTimer(killWait)
	defer k.Stop()
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM; killed its process group", p.name, p.pid(), grace)
	case <-k.C:
		return fmt.Errorf("%s (pid %d) still running %v after SIGKILL", p.name, p.pid(), killWait)
	}
}

func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return "exit status " + strconv.Itoa(ee.ExitCode())
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// reapLeftovers waits up to wait for the app processes seen answering to
// disappear, then SIGKILLs those still running. The app processes are
// started by the tool (hotcluster or air), not by the driver, but must not
// outlive it; a leftover is reported as an error, never hidden. A PID is only
// signalled if its command line holds "-id <runID>", so a recycled PID is
// left alone.
func reapLeftovers(pids map[int]bool, runID string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var left []int
	for {
		left = left[:0]
		for pid := range pids {
			if isApp(pid, runID) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) == 0 {
		return nil
	}
	slices.Sort(left)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("app processes %v outlived their tool by %v; killed them", left, wait)
}

// isApp reports whether pid runs the app of this run (and is not a zombie).
func isApp(pid int, runID string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return false
	}
	return bytes.Contains(b, []byte("\x00-id\x00"+runID+"\x00"))
}

// freePort returns a loopback TCP port that was free a moment ago. Another
// program could take it before the tool binds; the run then fails and says
// so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
