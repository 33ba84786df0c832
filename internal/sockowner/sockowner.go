// Package sockowner finds the processes that hold a socket, given the
// socket's inode number (as package sockdiag reports it), the way ss -p and
// lsof do: every descriptor of a socket reads, under /proc/PID/fd, as a
// link to "socket:[INODE]".
//
// Invariant: a scan is bounded, in processes, in descriptors and in time
// (see [MaxProcesses], [MaxFDs], [ScanTimeout]); what it could not see is
// missing from the answer, never waited for.
//
// # Privileges
//
// A process may read the descriptors of its own user's processes, and root
// (CAP_SYS_PTRACE) those of every process. The owner of a socket that
// belongs to another user is therefore unknown to an unprivileged caller.
// Under systemd, ProtectProc=invisible hides other users' processes
// altogether.
package sockowner

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of one [Find].
const (
	// MaxProcesses is how many processes one scan looks at.
	MaxProcesses = 1 << 16
	// MaxFDs is how many descriptors one scan reads, over all processes.
	MaxFDs = 1 << 20
	// ScanTimeout bounds the time of one scan.
	ScanTimeout = 2 * time.Second
	// maxCommand is how much of a command line is kept.
	maxCommand = 200
)

// procDir is /proc, but in tests.
var procDir = "/proc"

// Process is one process that holds a socket.
type Process struct {
	PID int
	// PPID is its parent's PID, 0 when unknown.
	PPID int
	// Command is its command line on one line: arguments joined by
	// spaces, runs of white space made one space, cut to 200 bytes; "[name]"
	// when it has none (a kernel thread, a zombie).
	Command string
}

// String gives "pid 1234 (python3 -m http.server)".
func (p Process) String() string {
	return fmt.Sprintf("pid %d (%s)", p.PID, p.Command)
}

// Find returns, for each of inodes that some visible process holds, those
// processes in PID order. It never fails: processes that vanish or cannot
// be read are skipped, and a scan that reaches a bound stops there.
func Find(inodes ...uint64) map[uint64][]Process {
	out := make(map[uint64][]Process)
	if len(inodes) == 0 {
		return out
	}
	want := make(map[string]uint64, len(inodes))
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(ino, 10)+"]"] = ino
	}
	d, err := os.Open(procDir)
	if err != nil {
		return out
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	if len(pids) > MaxProcesses {
		pids = pids[:MaxProcesses]
	}
	deadline := time.Now().Add(ScanTimeout)
	fds := 0
	for _, pid := range pids {
		if fds >= MaxFDs || time.Now().After(deadline) {
			break
		}
		dir := procDir + "/" + strconv.Itoa(pid) + "/fd"
		f, err := os.Open(dir)
		if err != nil {
			continue // gone, or another user's
		}
		ents, _ := f.Readdirnames(MaxFDs - fds)
		f.Close()
		fds += len(ents)
		seen := make(map[uint64]bool)
		for _, e := range ents {
			target, err := os.Readlink(dir + "/" + e)
			if err != nil {
				continue
			}
			if ino, ok := want[target]; ok && !seen[ino] {
				seen[ino] = true
				if p, err := Describe(pid); err == nil {
					out[ino] = append(out[ino], p)
				}
			}
		}
	}
	return out
}

// Describe reads pid's parent and command line.
func Describe(pid int) (Process, error) {
	p := Process{PID: pid}
	base := procDir + "/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(base + "/stat")
	if err != nil {
		return p, fmt.Errorf("sockowner: describe pid %d: %w", pid, err)
	}
	name, ppid, err := parseStat(stat)
	if err != nil {
		return p, fmt.Errorf("sockowner: describe pid %d: %w", pid, err)
	}
	p.PPID = ppid
	cmdline, _ := os.ReadFile(base + "/cmdline")
	cmdline = bytes.TrimRight(cmdline, "\x00")
	if len(cmdline) == 0 {
		p.Command = "[" + name + "]"
		return p, nil
	}
	// Arguments with newlines (python3 -c '…') would break a log line.
	cmd := strings.Join(strings.Fields(strings.ReplaceAll(string(cmdline), "\x00", " ")), " ")
	if len(cmd) > maxCommand {
		cmd = cmd[:maxCommand-len("…")] + "…"
	}
	p.Command = cmd
	return p, nil
}

// parseStat reads the comm and ppid fields of /proc/PID/stat. The comm is
// in parentheses and may itself contain spaces and parentheses, so the
// fields after it are found from the last ')'.
func parseStat(b []byte) (comm string, ppid int, err error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("malformed stat %q", b)
	}
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 2 {
		return "", 0, fmt.Errorf("malformed stat %q", b)
	}
	ppid, err = strconv.Atoi(fields[1]) // fields[0] is the state
	if err != nil {
		return "", 0, fmt.Errorf("malformed stat %q: %w", b, err)
	}
	return string(b[open+1 : end]), ppid, nil
}

// Ancestors returns pid's parent, its parent's parent and so on, nearest
// first, up to and without PID 0; at most 64 of them.
func Ancestors(pid int) []int {
	var out []int
	for len(out) < 64 {
		p, err := Describe(pid)
		if err != nil || p.PPID <= 0 || slices.Contains(out, p.PPID) {
			return out
		}
		out = append(out, p.PPID)
		pid = p.PPID
	}
	return out
}

// Sockets returns the socket descriptors process pid holds, by socket
// inode: inode -> descriptor number (the lowest, if it holds the socket
// twice), bounded by MaxFDs. A process that is gone holds none; one this
// user may not look into is an error.
func Sockets(pid int) (map[uint64]int, error) {
	dir := procDir + "/" + strconv.Itoa(pid) + "/fd"
	f, err := os.Open(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("sockowner: descriptors of pid %d: %w", pid, err)
	}
	ents, _ := f.Readdirnames(MaxFDs)
	f.Close()
	out := make(map[uint64]int)
	for _, e := range ents {
		fd, err := strconv.Atoi(e)
		if err != nil {
			continue
		}
		target, err := os.Readlink(dir + "/" + e)
		if err != nil {
			continue // closed meanwhile
		}
		rest, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
		if err != nil {
			continue
		}
		if prev, ok := out[ino]; !ok || fd < prev {
			out[ino] = fd
		}
	}
	return out, nil
}

// Descendants lists the processes below pid (children, their children…),
// read from every process's parent in /proc/*/stat, at most MaxProcesses
// of them looked at and max returned.
func Descendants(pid, max int) []int {
	d, err := os.Open(procDir)
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(MaxProcesses)
	d.Close()
	children := make(map[int][]int)
	for _, n := range names {
		p, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(procDir + "/" + n + "/stat")
		if err != nil {
			continue
		}
		if _, ppid, err := parseStat(b); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := children[pid]
	for len(queue) > 0 && len(out) < max {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}
