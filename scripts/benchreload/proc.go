package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killWait bounds the wait for a process after SIGKILL.
const killWait = 5 * time.Second

// proc is one process the driver started, in its own process group (so that a
// Ctrl-C in the terminal reaches only the driver, which then stops it). Its
// output goes to a log file, never a pipe, so nothing can block on it. One
// goroutine waits for it; stop and the done channel are the only ways to
// observe its end.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error // written before done is closed
	stopped bool
}

func startProc(name, logDir string, argv []string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
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
// activation and notify protocols, which belong to the driver (for example
// under systemd) and must not reach what it starts.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LISTEN_") || strings.HasPrefix(k, "HOTCLUSTER_") || k == "NOTIFY_SOCKET" {
			continue
		}
		env = append(env, kv)
	}
	return env
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

// reapLeftovers waits up to wait for the given worker PIDs to disappear,
// then SIGKILLs those still running the worker binary exe. Workers are
// started by the master, not by the driver, but they must not outlive it; a
// leftover is reported as an error (a hotcluster bug), never hidden. A PID is
// only signalled if /proc/PID/exe is exe, so a recycled PID is left alone.
func reapLeftovers(pids map[int]bool, exe string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var left []int
	for {
		left = left[:0]
		for pid := range pids {
			if runs(pid, exe) {
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
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("workers %v outlived their master by %v; killed them", left, wait)
}

func runs(pid int, exe string) bool {
	got, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && got == exe
}

// cpuTicks returns utime+stime of pid in clock ticks, from /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime field 14, stime field 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return u + s, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times. It is 100 on
// every Linux architecture Go supports (sysconf(_SC_CLK_TCK) is not in the
// standard library).
const clockTicks = 100

// cpuMeter measures a process's CPU use between two points in time.
type cpuMeter struct {
	pid   int
	ticks int64
	at    time.Time
}

func startCPU(pid int) (cpuMeter, error) {
	t, err := cpuTicks(pid)
	return cpuMeter{pid, t, time.Now()}, err
}

// percent returns the CPU use since the meter started, in percent of one CPU.
func (m cpuMeter) percent() (float64, error) {
	t, err := cpuTicks(m.pid)
	if err != nil {
		return 0, err
	}
	secs := time.Since(m.at).Seconds()
	return float64(t-m.ticks) / clockTicks / secs * 100, nil
}

// rssKiB returns VmRSS of pid in KiB.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// freePort returns a loopback TCP port that was free a moment ago. Another
// program could take it before the server binds; the server then fails to
// start and the scenario reports that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portSockets counts the TCP sockets of the driver's network namespace whose
// local or remote port is a given port.
type portSockets struct{ listen, timeWait, total int }

// socketsOn reads /proc/net/tcp and /proc/net/tcp6 (absent without IPv6).
func socketsOn(port int) (portSockets, error) {
	var n portSockets
	suffix := []byte(fmt.Sprintf(":%04X", port))
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) && file == "/proc/net/tcp6" {
			continue
		}
		if err != nil {
			return n, err
		}
		first := true
		for line := range bytes.Lines(b) {
			if first { // the header
				first = false
				continue
			}
			// "sl local_address rem_address st ...", addresses as HEX:PORT.
			var f [4][]byte
			i := 0
			for field := range bytes.FieldsSeq(line) {
				f[i] = field
				if i++; i == len(f) {
					break
				}
			}
			if i < len(f) || !bytes.HasSuffix(f[1], suffix) && !bytes.HasSuffix(f[2], suffix) {
				continue
			}
			n.total++
			switch string(f[3]) {
			case "0A":
				n.listen++
			case "06":
				n.timeWait++
			}
		}
	}
	return n, nil
}

// waitRefused waits, up to wait, until a connection to addr is refused: after
// a server stopped, nothing may still accept on its port before the next one
// starts there.
func waitRefused(ctx context.Context, addr string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			if err == nil {
				return fmt.Errorf("%s still accepts connections %v after its server stopped", addr, wait)
			}
			return fmt.Errorf("%s: want connection refused, got %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
