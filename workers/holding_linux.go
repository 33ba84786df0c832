package workers

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// heldSockets returns which of inodes (socket inodes; 0 is skipped) process
// pid or one of its descendants holds an open descriptor to, as
// /proc/PID/fd shows them (socket:[INODE]). A worker that closed its
// inherited listeners, to bind the port itself for instance, holds none,
// and a generation of such workers would be cut over to a socket nobody
// accepts on. ok is false when /proc cannot tell (not mounted, hidden, or
// the process has already exited): callers then assume the sockets are
// held.
func heldSockets(pid int, inodes []uint64) (held []bool, ok bool) {
	held = make([]bool, len(inodes))
	want := make(map[uint64]int, len(inodes))
	for i, ino := range inodes {
		if ino != 0 {
			want[ino] = i
		}
	}
	if len(want) == 0 {
		return held, true
	}
	n, err := markHeld(pid, want, held)
	if err != nil {
		return held, false
	}
	if n > 0 {
		// The common case: the worker itself holds its sockets, and
		// nobody walks /proc for its descendants.
		return held, true
	}
	for _, d := range descendants(pid) {
		if n, _ := markHeld(d, want, held); n > 0 {
			return held, true
		}
	}
	if exited(pid) {
		// It said it was ready and died at once: its exit, reported next,
		// is the story, not its empty descriptor table.
		return held, false
	}
	return held, true
}

// exited reports whether pid is gone or a zombie.
func exited(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}

// markHeld marks in held the sockets of want that pid holds and returns how
// many it holds.
func markHeld(pid int, want map[uint64]int, held []bool) (int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil // gone meanwhile: holds nothing
		}
		return 0, err
	}
	n := 0
	for _, e := range ents {
		link, err := os.Readlink(dir + e.Name())
		if err != nil {
			continue
		}
		rest, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
		if err != nil {
			continue
		}
		if i, ok := want[ino]; ok {
			held[i] = true
			n++
		}
	}
	return n, nil
}

// descendants lists the processes below pid, read from every process's
// parent in /proc/*/stat.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := make(map[int][]int)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name in parentheses may hold anything; the parent is
		// the second field after its closing parenthesis.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := children[pid]
	for len(queue) > 0 && len(out) < 1<<16 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}
