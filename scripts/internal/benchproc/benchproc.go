// Package benchproc starts and stops the processes of the benchmark drivers
// (scripts/benchreload, scripts/benchdev): each in its own process group,
// its output in a log file, one goroutine waiting for it, stopped by PID
// (SIGTERM, then SIGKILL to its own group after a grace period).
package benchproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KillWait bounds the wait for a process after SIGKILL.
const KillWait = 5 * time.Second

// Proc is one process a driver started. Its own process group means a
// Ctrl-C in the terminal reaches only the driver, which then stops it; its
// output goes to a log file, never a pipe, so nothing can block on it.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	// Done is closed once the process was waited for; WaitErr is set before.
	Done    chan struct{}
	WaitErr error
	// Stopped is set by Stop, or by a caller that saw the process end.
	Stopped bool
}

// Start runs argv in dir (empty: the driver's), logging to logDir/name.log.
func Start(name, logDir, dir string, argv []string) (*Proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = ChildEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, Done: make(chan struct{})}
	go func() {
		p.WaitErr = cmd.Wait()
		f.Close()
		close(p.Done)
	}()
	return p, nil
}

// ChildEnv is the driver's environment without the variables of the socket
// activation and notify protocols, which belong to the driver (for example
// under systemd) and must not reach what it starts, and with colours off.
func ChildEnv() []string {
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

// PID is the process's ID, also its process group's.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited returns an error describing the exit if the process has ended.
func (p *Proc) Exited() error {
	select {
	case <-p.Done:
		return fmt.Errorf("%s (pid %d) exited: %s; log %s:\n%s", p.Name, p.PID(), DescribeExit(p.WaitErr), p.LogPath, p.LogTail(15))
	default:
		return nil
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs the process group the
// process leads and waits up to KillWait. It is safe to call more than once;
// it returns an error if the process did not exit with status 0 after
// SIGTERM.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Stopped {
		return nil
	}
	p.Stopped = true
	select {
	case <-p.Done:
		return fmt.Errorf("%s (pid %d) had already exited: %s", p.Name, p.PID(), DescribeExit(p.WaitErr))
	default:
	}
	_ = syscall.Kill(p.PID(), syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.Done:
		if p.WaitErr != nil {
			return fmt.Errorf("%s (pid %d) after SIGTERM: %s", p.Name, p.PID(), DescribeExit(p.WaitErr))
		}
		return nil
	case <-t.C:
	}
	// Not reaped yet (Done is open), so the pid and its group are still ours.
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	k := time.NewTimer(KillWait)
	defer k.Stop()
	select {
	case <-p.Done:
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM; killed its process group", p.Name, p.PID(), grace)
	case <-k.C:
		return fmt.Errorf("%s (pid %d) still running %v after SIGKILL", p.Name, p.PID(), KillWait)
	}
}

// DescribeExit says how a process ended.
func DescribeExit(err error) string {
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

// LogTail returns the last n lines of the process's log, indented.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// FreePort returns a loopback TCP port that was free a moment ago. Another
// program could take it before the server binds; the run then fails and
// says so.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
