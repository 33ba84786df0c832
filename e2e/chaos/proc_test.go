//go:build chaos

package chaos

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procStat is what the tests read from /proc/PID/stat.
type procStat struct {
	state     byte
	ppid      int
	startTime uint64 // clock ticks after boot: with the PID, a process's identity
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, starttime field 22.
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return procStat{state: f[0][0], ppid: ppid, startTime: start}, nil
}

// proc identifies one process across PID reuse.
type proc struct {
	pid       int
	startTime uint64
}

// exists reports whether p is still in the process table (a zombie counts:
// it vanishes once reaped).
func (p proc) exists() bool {
	st, err := readStat(p.pid)
	return err == nil && st.startTime == p.startTime
}

// children returns the master's live children (zombies and its keeper
// left out), which are its workers: each starts as the shim and keeps its
// PID.
func children(master int) []proc {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", master))
	var out []proc
	seen := map[int]bool{}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil || seen[pid] {
				continue
			}
			seen[pid] = true
			st, err := readStat(pid)
			if err != nil || st.state == 'Z' || st.ppid != master {
				continue
			}
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.HasPrefix(b, []byte("hotcluster-keeper\x00")) {
				continue
			}
			out = append(out, proc{pid, st.startTime})
		}
	}
	return out
}

// groupPIDs returns every process whose argv holds nonce: a master started
// by startMaster and all its workers (a zombie's argv reads empty).
func groupPIDs(nonce string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	needle := []byte(nonce)
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(d + "/cmdline")
		if err == nil && bytes.Contains(b, needle) {
			out = append(out, pid)
		}
	}
	return out
}

// killChild sends SIGKILL to pid only if it is still a live child of the
// master: the pidfd pins the process, so a PID reused since it was listed is
// never signalled.
func killChild(master int, p proc) (bool, error) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		if err == unix.ESRCH {
			return false, nil
		}
		return false, fmt.Errorf("pidfd_open %d: %w", p.pid, err)
	}
	defer unix.Close(fd)
	st, err := readStat(p.pid)
	if err != nil || st.startTime != p.startTime || st.ppid != master || st.state == 'Z' {
		return false, nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if err == unix.ESRCH {
			return false, nil
		}
		return false, fmt.Errorf("pidfd_send_signal %d: %w", p.pid, err)
	}
	return true, nil
}

// fdCount is the number of descriptors pid has open.
func fdCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// rssKiB is pid's resident set size (VmRSS), in KiB.
func rssKiB(pid int) (int, error) { return statusKiB(pid, "VmRSS") }

// statusKiB reads a figure in kB of /proc/PID/status: VmRSS, or RssAnon,
// the part of it that is the process's own memory rather than pages of
// its binary.
func statusKiB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// alive reports whether pid can be signalled (a zombie can).
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// poll checks cond every 10ms until it holds (true) or d passed (false).
// It is for state only /proc or the kernel shows: processes gone, a set of
// children.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}
