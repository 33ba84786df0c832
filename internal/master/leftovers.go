package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/cgroup"
	"github.com/hotcluster/hotcluster/internal/keeper"
	"github.com/hotcluster/hotcluster/internal/reaper"
	"golang.org/x/sys/unix"
)

// Bounds of the clean-up at a worker's exit and at the master's.
const (
	// leafTimeout: a worker's cgroup empties once SIGKILL has reached
	// everything in it.
	leafTimeout = 2 * time.Second
	// treeTimeout: the same for the whole tree, when the master stops.
	treeTimeout = 5 * time.Second
	// orphanTimeout bounds the reaper's look at a worker's orphans.
	orphanTimeout = 2 * time.Second
	// keeperTimeout: a keeper told "exit" ends at once.
	keeperTimeout = 5 * time.Second
)

// leftovers keeps what the workers start from outliving them, in three
// layers (docs/reliability.md says what holds without each): a cgroup per
// worker where the master may make one (cgroup.kill gets everything,
// however it detached); the reaper, which gets back what detached
// (as PID 1 or as a child subreaper), reaps it, and kills it once its
// worker has exited; and the keeper, which kills what is left if the
// master is killed. It is the pool's workers.Leftovers.
type leftovers struct {
	log    *slog.Logger
	reaper *reaper.Reaper
	tree   *cgroup.Tree // nil: no cgroups
	// treeErr says why there is no tree (nil: not asked for).
	treeErr error
	keeper  *keeper.Keeper // nil: PID 1, or it could not start
	keepErr error

	mu       sync.Mutex
	leaves   map[int]*cgroup.Leaf // by worker PID
	seq      int
	noLeaves bool // the kernel refused to start a worker in its cgroup
}

// leftoversConfig is how the master wants them.
type leftoversConfig struct {
	noCgroup bool
	jsonLog  bool
}

// newLeftovers makes this process the reaper of its orphans, makes the
// workers' cgroup tree where it can, and starts the keeper. Nothing of
// that failing stops the master: each layer that is missing is said once
// in the log (see logStart).
func newLeftovers(cfg leftoversConfig, log *slog.Logger) *leftovers {
	l := &leftovers{log: log, leaves: make(map[int]*cgroup.Leaf)}
	l.reaper = reaper.New(reaper.Config{
		Log: log,
		Track: func(pid int, start uint64) {
			if l.keeper != nil {
				l.keeper.Orphan(pid, start)
			}
		},
		Untrack: func(pid int) {
			if l.keeper != nil {
				l.keeper.OrphanGone(pid)
			}
		},
	})
	if cfg.noCgroup {
		l.treeErr = errors.New("--cgroup off")
	} else if t, err := cgroup.Open("hotcluster-" + strconv.Itoa(os.Getpid())); err != nil {
		l.treeErr = err
	} else {
		l.tree = t
	}
	if l.reaper.Role() == reaper.PID1 {
		// When PID 1 exits the kernel kills the whole namespace: nothing
		// can outlive it, and there is no one to keep watch.
		return l
	}
	format := "text"
	if cfg.jsonLog {
		format = "json"
	}
	k, err := keeper.Start(keeper.Config{
		Args: []string{keeper.Command, "--master", strconv.Itoa(os.Getpid()), "--pgrp", strconv.Itoa(unix.Getpgrp()), "--log-format", format},
		Fork: l.reaper.Fork,
		Log:  log,
	})
	if err != nil {
		l.keepErr = err
		return l
	}
	l.keeper = k
	if l.tree != nil {
		k.Cgroup(l.tree.Path())
	}
	return l
}

// describe says, in one line for the log, what guards against leftovers.
func (l *leftovers) describe() string {
	var parts []string
	switch l.reaper.Role() {
	case reaper.PID1:
		parts = append(parts, "PID 1 of its namespace: every orphan there is reaped, and when this master exits the kernel kills what is left")
	case reaper.Subreaper:
		parts = append(parts, "child subreaper: what detaches from a worker comes back to this master")
	default:
		parts = append(parts, "not a subreaper (the kernel refused): what detaches from a worker goes to init")
	}
	if l.tree != nil {
		parts = append(parts, "a cgroup per worker in "+l.tree.Path())
	} else {
		parts = append(parts, fmt.Sprintf("no cgroups (%v): leftovers are found by process group and environment", l.treeErr))
	}
	switch {
	case l.keeper != nil:
		parts = append(parts, fmt.Sprintf("keeper pid %d kills what is left if this master is killed", l.keeper.PID()))
	case l.keepErr != nil:
		parts = append(parts, fmt.Sprintf("no keeper (%v)", l.keepErr))
	}
	return "leftovers: " + strings.Join(parts, "; ")
}

// Start is workers.Leftovers.Start: in a cgroup of its own when there is
// a tree, recorded as the pool's own by the reaper.
func (l *leftovers) Start(gen uint64, slot int, fork func(int) (int, error)) (int, error) {
	leaf, fd := l.leaf(gen, slot)
	if fd != nil {
		defer fd.Close()
	}
	cgfd := -1
	if fd != nil {
		cgfd = int(fd.Fd())
	}
	pid, err := l.reaper.ForkWorker(gen, slot, func() (int, error) { return fork(cgfd) })
	if err != nil && leaf != nil && refusedCgroup(err) {
		// A kernel or sandbox without clone3's CLONE_INTO_CGROUP: the
		// workers start without cgroups from now on.
		l.log.Warn(fmt.Sprintf("start gen %d worker %d in its cgroup: %v; workers start without cgroups from now on", gen, slot, err))
		l.mu.Lock()
		l.noLeaves = true
		l.mu.Unlock()
		leaf.Remove(leafTimeout)
		leaf = nil
		pid, err = l.reaper.ForkWorker(gen, slot, func() (int, error) { return fork(-1) })
	}
	if err != nil {
		if leaf != nil {
			leaf.Remove(leafTimeout)
		}
		return pid, err
	}
	if leaf != nil {
		l.mu.Lock()
		l.leaves[pid] = leaf
		l.mu.Unlock()
	}
	if l.keeper != nil {
		l.keeper.Worker(pid)
	}
	return pid, nil
}

// leaf makes the cgroup of a worker about to start, and opens it.
func (l *leftovers) leaf(gen uint64, slot int) (*cgroup.Leaf, *os.File) {
	l.mu.Lock()
	if l.tree == nil || l.noLeaves {
		l.mu.Unlock()
		return nil, nil
	}
	l.seq++
	name := fmt.Sprintf("g%d-w%d-%d", gen, slot, l.seq)
	l.mu.Unlock()
	leaf, err := l.tree.Leaf(name)
	if err != nil {
		l.log.Warn(fmt.Sprintf("gen %d worker %d: %v; it starts without a cgroup", gen, slot, err))
		return nil, nil
	}
	f, err := leaf.Open()
	if err != nil {
		l.log.Warn(fmt.Sprintf("gen %d worker %d: %v; it starts without a cgroup", gen, slot, err))
		leaf.Remove(leafTimeout)
		return nil, nil
	}
	return leaf, f
}

// refusedCgroup: the fork failed because of CLONE_INTO_CGROUP.
func refusedCgroup(err error) bool {
	return errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.E2BIG)
}

// Exited is workers.Leftovers.Exited: the worker's cgroup is killed and
// removed, and the reaper kills the orphans it left.
func (l *leftovers) Exited(gen uint64, slot int, pid int) {
	l.mu.Lock()
	leaf := l.leaves[pid]
	delete(l.leaves, pid)
	l.mu.Unlock()
	if leaf != nil {
		if left := leaf.Procs(); len(left) > 0 {
			l.log.Info(fmt.Sprintf("gen %d worker %d (pid %d) exited: killed what it left in its cgroup: %s", gen, slot, pid, describePIDs(left)))
		}
		if err := leaf.Kill(); err != nil {
			l.log.Warn(err.Error())
		}
		if err := leaf.Remove(leafTimeout); err != nil {
			l.log.Warn(fmt.Sprintf("gen %d worker %d (pid %d): %v", gen, slot, pid, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), orphanTimeout)
	defer cancel()
	l.reaper.WorkerExited(ctx, pid)
	if l.keeper != nil {
		l.keeper.WorkerGone(pid)
	}
}

// Own is workers.Leftovers.Own.
func (l *leftovers) Own(fork func() (int, error)) (int, error) { return l.reaper.Fork(fork) }

// close ends the layers once the pool and the reaper have stopped: the
// tree is killed and removed, and the keeper told that nothing is left.
func (l *leftovers) close() {
	if l.tree != nil {
		killed, err := l.tree.Close(treeTimeout)
		if len(killed) > 0 {
			l.log.Info(fmt.Sprintf("stopping: killed what the workers left in their cgroups: %s", describePIDs(killed)))
		}
		if err != nil {
			l.log.Warn(fmt.Sprintf("stopping: %v", err))
		}
	}
	if l.keeper != nil {
		if err := l.keeper.Close(keeperTimeout); err != nil {
			l.log.Warn(err.Error())
		}
	}
}

// describePIDs is "pid 12 (sleep), pid 13 (node)".
func describePIDs(pids []int) string {
	out := make([]string, 0, len(pids))
	for _, pid := range pids {
		s := "pid " + strconv.Itoa(pid)
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
			s += " (" + strings.TrimSpace(string(b)) + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}
