// Package keeper is the small process that outlives a master killed with
// SIGKILL (or by the OOM killer) and kills what that master's workers
// left: their parent-death signal ends the workers themselves, not what
// they started (the `sh` of `sh -c 'node server.js'` dies, node keeps the
// port and serves the old code).
//
// Invariant: the keeper acts only when the pipe from its master reaches
// its end without the master having said "exit" first, that is when the
// master died without stopping; a master that stops says "exit" once it
// has stopped everything itself, and its keeper then exits without
// touching anything.
//
// # What it kills
//
// The master tells it, over the pipe, one line at a time: its workers'
// cgroup tree, if it has one (package internal/cgroup; then cgroup.kill
// gets everything, however it detached); each worker's process group; each
// orphan the reaper follows (PID and start time, so a reused PID is never
// killed); and the inodes of the listening sockets. Without a tree, the
// keeper also kills every process that holds one of those sockets, except
// those of the master's own process group (the new master of an upgrade),
// and not at all while an upgrade is under way or after a new master took
// over: a process of another session that keeps fd 3 would otherwise keep
// the port.
//
// The keeper is a re-exec of hotcluster's own binary (a hidden command of
// the command line), in a process group of its own so that a terminal's
// Ctrl-C or a signal to the master's group does not reach it, and it
// ignores SIGTERM, SIGINT and SIGHUP. A PID 1 master starts none: when PID
// 1 exits, the kernel kills every process of its namespace.
package keeper

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command is the hidden command of hotcluster's command line that runs
// Main.
const Command = "__keeper"

// writeTimeout bounds one message to a keeper that stopped reading.
const writeTimeout = time.Second

// Config starts a keeper.
type Config struct {
	// Args is the command line after the binary: Command and the flags
	// its command-line code wants (see Main).
	Args []string
	// Fork starts the process, returned by start, as one its caller waits
	// for (the reaper's Fork); nil calls start.
	Fork func(start func() (int, error)) (int, error)
	Log  *slog.Logger
}

// Keeper is the master's end of a running keeper. Its methods are safe
// from any goroutine and never block for long.
type Keeper struct {
	log    *slog.Logger
	cmd    *exec.Cmd
	w      *os.File
	exited chan struct{}
	err    error // of the keeper's exit, once exited is closed

	mu      sync.Mutex
	broken  bool
	closed  bool
	sockets map[uint64]bool
}

// Start starts a keeper with its own binary (/proc/self/exe).
func Start(cfg Config) (*Keeper, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start keeper: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", cfg.Args...)
	cmd.Args[0] = "hotcluster-keeper"
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{r} // fd 3
	// Its own group: Ctrl-C on a terminal and signals to the master's
	// group are not for it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	}
	if cfg.Fork != nil {
		_, err = cfg.Fork(start)
	} else {
		_, err = start()
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start keeper: %w", err)
	}
	k := &Keeper{log: cfg.Log, cmd: cmd, w: w, exited: make(chan struct{}), sockets: make(map[uint64]bool)}
	go func() {
		k.err = cmd.Wait()
		close(k.exited)
		k.mu.Lock()
		closed := k.closed
		k.mu.Unlock()
		if !closed {
			k.log.Warn(fmt.Sprintf("keeper (pid %d) exited: %v; if this master is killed now, what its workers started may be left running", k.PID(), k.err))
		}
	}()
	return k, nil
}

// PID is the keeper's.
func (k *Keeper) PID() int { return k.cmd.Process.Pid }

func (k *Keeper) send(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.broken || k.closed {
		return
	}
	k.w.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := fmt.Fprintf(k.w, format+"\n", args...); err != nil {
		k.broken = true
		k.log.Warn(fmt.Sprintf("keeper (pid %d): %v; it no longer learns what to kill if this master is killed", k.PID(), err))
	}
}

// Cgroup names the workers' cgroup tree.
func (k *Keeper) Cgroup(path string) { k.send("cgroup %s", path) }

// Worker: worker pid leads a process group; WorkerGone: it has exited.
func (k *Keeper) Worker(pid int)     { k.send("worker %d", pid) }
func (k *Keeper) WorkerGone(pid int) { k.send("-worker %d", pid) }

// Orphan: the reaper follows pid, which started at start; OrphanGone: no
// longer.
func (k *Keeper) Orphan(pid int, start uint64) { k.send("orphan %d %d", pid, start) }
func (k *Keeper) OrphanGone(pid int)           { k.send("-orphan %d", pid) }

// Sockets names listening sockets by inode (0s and repeats are skipped).
func (k *Keeper) Sockets(inodes []uint64) {
	for _, ino := range inodes {
		k.mu.Lock()
		seen := k.sockets[ino]
		k.sockets[ino] = true
		k.mu.Unlock()
		if ino != 0 && !seen {
			k.send("socket %d", ino)
		}
	}
}

// Hold: an upgrade is under way, the new master holds the sockets too;
// Unhold: it failed. HandedOver: a new master took over for good.
func (k *Keeper) Hold()       { k.send("hold") }
func (k *Keeper) Unhold()     { k.send("unhold") }
func (k *Keeper) HandedOver() { k.send("handover") }

// Close tells the keeper that the master stopped everything itself, and
// waits (at most timeout) for it to exit. Safe to call twice.
func (k *Keeper) Close(timeout time.Duration) error {
	k.send("exit")
	k.mu.Lock()
	if !k.closed {
		k.closed = true
		k.w.Close()
	}
	k.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-k.exited:
		return k.err
	case <-t.C:
		return fmt.Errorf("keeper (pid %d) still running %s after the master's exit", k.PID(), timeout)
	}
}

// state is what a keeper has been told.
type state struct {
	cgroup   string
	workers  map[int]bool
	orphans  map[int]uint64
	sockets  []uint64
	hold     bool
	handover bool
	exit     bool
}

// read applies the master's lines until the pipe's end.
func read(r io.Reader) (*state, error) {
	s := &state{workers: make(map[int]bool), orphans: make(map[int]uint64)}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		verb, arg, _ := strings.Cut(sc.Text(), " ")
		switch verb {
		case "cgroup":
			s.cgroup = arg
		case "worker", "-worker":
			if pid, err := strconv.Atoi(arg); err == nil && pid > 1 {
				if verb == "worker" {
					s.workers[pid] = true
				} else {
					delete(s.workers, pid)
				}
			}
		case "orphan":
			p, st, _ := strings.Cut(arg, " ")
			pid, err1 := strconv.Atoi(p)
			start, err2 := strconv.ParseUint(st, 10, 64)
			if err1 == nil && err2 == nil && pid > 1 {
				s.orphans[pid] = start
			}
		case "-orphan":
			if pid, err := strconv.Atoi(arg); err == nil {
				delete(s.orphans, pid)
			}
		case "socket":
			if ino, err := strconv.ParseUint(arg, 10, 64); err == nil && !slices.Contains(s.sockets, ino) {
				s.sockets = append(s.sockets, ino)
			}
		case "hold":
			s.hold = true
		case "unhold":
			s.hold = false
		case "handover":
			s.handover = true
		case "exit":
			s.exit = true
		}
	}
	return s, sc.Err()
}
