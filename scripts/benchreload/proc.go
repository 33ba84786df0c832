package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/scripts/internal/benchproc"
)

// proc is a process the driver started.
type proc = benchproc.Proc

const killWait = benchproc.KillWait

var (
	childEnv     = benchproc.ChildEnv
	describeExit = benchproc.DescribeExit
	freePort     = benchproc.FreePort
)

// startProc starts argv in the driver's directory.
func startProc(name, logDir string, argv []string) (*proc, error) {
	return benchproc.Start(name, logDir, "", argv)
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
