package cgroup

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/internal/safedir"
	"golang.org/x/sys/unix"
)

// ErrUnavailable is what Open's errors wrap when no tree can be made: no
// unified hierarchy, a cgroup this user may not write, a kernel without
// cgroup.kill.
var ErrUnavailable = errors.New("cgroup: unavailable")

// Tree is a cgroup this process made below its own in the unified
// hierarchy, with a leaf per worker. Its methods are safe for concurrent
// use.
type Tree struct {
	parent *safedir.Dir // the process's own cgroup
	dir    *safedir.Dir
	name   string
	id     safedir.FileID

	closeOnce sync.Once
	killed    []int
	closeErr  error
}

// Open makes the tree name (a name such as "hotcluster-1234", with a
// random suffix if it is taken) below this process's own v2 cgroup.
func Open(name string) (*Tree, error) {
	own, _, err := system{"/"}.v2Dir()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	parent, err := safedir.Open(own, safedir.OwnerOnly)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	t := &Tree{parent: parent}
	for try := 0; ; try++ {
		t.name = name
		if try > 0 {
			// PID 1 of every container is "hotcluster-1".
			t.name = fmt.Sprintf("%s-%08x", name, rand.Uint32())
		}
		t.dir, t.id, err = parent.Mkdir(t.name, 0o755)
		if err == nil || !errors.Is(err, fs.ErrExist) || try == 20 {
			break
		}
	}
	if err != nil {
		parent.Close()
		why := ""
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
			why = " (root outside a read-only container, or a delegated subtree: systemd's Delegate=yes, may make one)"
		}
		return nil, fmt.Errorf("%w: %w%s", ErrUnavailable, err, why)
	}
	if _, err := t.dir.Lstat("cgroup.kill"); err != nil {
		t.dir.Close()
		parent.RemoveIfSame(t.name, t.id)
		parent.Close()
		return nil, fmt.Errorf("%w: %s has no cgroup.kill (Linux 5.14 or later has)", ErrUnavailable, t.dir.Path())
	}
	return t, nil
}

// Path is the tree's directory.
func (t *Tree) Path() string { return t.dir.Path() }

// Leaf is the cgroup of one worker, in a Tree.
type Leaf struct {
	t    *Tree
	name string
	id   safedir.FileID
}

// Leaf makes the cgroup name in the tree. The leaf holds no descriptor
// (a reload of 2,048 workers has 4,096 leaves): each use opens it again by
// name in the tree, which only this master can change, checking it is
// still the directory made here.
func (t *Tree) Leaf(name string) (*Leaf, error) {
	d, id, err := t.dir.Mkdir(name, 0o755)
	if err != nil {
		return nil, err
	}
	d.Close()
	return &Leaf{t: t, name: name, id: id}, nil
}

// Path is the leaf's directory.
func (l *Leaf) Path() string { return l.t.dir.Join(l.name) }

// with runs f on the leaf's directory, open for the time of the call.
func (l *Leaf) with(f func(d *safedir.Dir) error) error {
	d, err := l.t.dir.OpenSub(l.name, l.id)
	if err != nil {
		return err
	}
	defer d.Close()
	return f(d)
}

// Open returns a descriptor of the leaf for clone3's CLONE_INTO_CGROUP
// (syscall.SysProcAttr's CgroupFD). The caller closes it once the process
// is started.
func (l *Leaf) Open() (f *os.File, err error) {
	err = l.with(func(d *safedir.Dir) error {
		f, err = d.OpenRead()
		return err
	})
	return f, err
}

// Procs lists the processes in the leaf.
func (l *Leaf) Procs() (out []int) {
	l.with(func(d *safedir.Dir) error {
		out = procs(d)
		return nil
	})
	return out
}

// Kill kills every process in the leaf (cgroup.kill: SIGKILL to each, and
// to any that forks meanwhile).
func (l *Leaf) Kill() error { return l.with(kill) }

// Remove waits, at most timeout, for the leaf to have no process left,
// then removes it. Once it returned the leaf is unusable.
func (l *Leaf) Remove(timeout time.Duration) error {
	if err := l.with(func(d *safedir.Dir) error { return waitEmpty(d, timeout) }); err != nil {
		return err
	}
	if _, err := l.t.dir.RemoveIfSame(l.name, l.id); err != nil {
		return err
	}
	return nil
}

// Close kills what is left in the tree, waits (at most timeout) until it
// is empty, and removes its leaves and itself. It returns the processes
// it killed. Later calls return what the first did.
func (t *Tree) Close(timeout time.Duration) ([]int, error) {
	t.closeOnce.Do(func() {
		defer t.parent.Close()
		defer t.dir.Close()
		t.killed, t.closeErr = removeTree(t.dir, timeout)
		if t.closeErr == nil {
			_, t.closeErr = t.parent.RemoveIfSame(t.name, t.id)
		}
	})
	return t.killed, t.closeErr
}

// RemoveTree is Close for another process's tree, known by its path: what
// the keeper does once the master died.
func RemoveTree(path string, timeout time.Duration) ([]int, error) {
	parent, err := safedir.Open(filepath.Dir(path), safedir.OwnerOnly)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	d, err := safedir.Open(path, safedir.OwnerOnly)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	killed, err := removeTree(d, timeout)
	if err != nil {
		return killed, err
	}
	_, err = parent.RemoveIfSame(filepath.Base(path), d.Stat().ID)
	return killed, err
}

// removeTree kills everything below d and removes d's subdirectories
// (leaves only: a tree has no deeper level).
func removeTree(d *safedir.Dir, timeout time.Duration) ([]int, error) {
	if _, err := d.Lstat("cgroup.kill"); errors.Is(err, fs.ErrNotExist) {
		return nil, nil // removed already
	}
	killed := procs(d)
	ents, _ := os.ReadDir(d.Path())
	var leaves []string
	for _, e := range ents {
		if e.IsDir() {
			leaves = append(leaves, e.Name())
			if sub, err := safedir.Open(d.Join(e.Name()), safedir.OwnerOnly); err == nil {
				killed = append(killed, procs(sub)...)
				sub.Close()
			}
		}
	}
	slices.Sort(killed)
	// Killed even when nothing was listed: a process may have forked in.
	if err := kill(d); err != nil {
		return killed, err
	}
	if err := waitEmpty(d, timeout); err != nil {
		return killed, err
	}
	var errs []error
	for _, name := range leaves {
		if e, err := d.Lstat(name); err == nil {
			if _, err := d.RemoveIfSame(name, e.ID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return killed, errors.Join(errs...)
}

func kill(d *safedir.Dir) error {
	f, _, err := d.OpenFile("cgroup.kill", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", d.Path(), err)
	}
	defer f.Close()
	if _, err := f.WriteString("1"); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", d.Path(), err)
	}
	return nil
}

// procs reads cgroup.procs; an unreadable one lists nothing.
func procs(d *safedir.Dir) []int {
	f, _, err := d.OpenFile("cgroup.procs", os.O_RDONLY, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	var out []int
	for _, s := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(s); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// waitEmpty returns once cgroup.events says "populated 0", or fails after
// timeout. The kernel wakes pollers of cgroup.events (POLLPRI) when it
// changes, so this waits without polling on a timer.
func waitEmpty(d *safedir.Dir, timeout time.Duration) error {
	f, _, err := d.OpenFile("cgroup.events", os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("watch cgroup %s: %w", d.Path(), err)
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 256)
	for {
		n, err := unix.Pread(int(f.Fd()), buf, 0)
		if err != nil {
			return fmt.Errorf("read %s: %w", d.Join("cgroup.events"), err)
		}
		if !populated(buf[:n]) {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("cgroup %s: processes %v still there %s after SIGKILL", d.Path(), procs(d), timeout)
		}
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLPRI}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("watch cgroup %s: %w", d.Path(), err)
		}
	}
}

func populated(events []byte) bool {
	for line := range strings.SplitSeq(string(events), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return strings.TrimSpace(v) != "0"
		}
	}
	return false
}
