package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/protocol"
	"github.com/hotcluster/hotcluster/signals"
	"golang.org/x/sys/unix"
)

// ScanInterval is how often the reaper looks for orphans that are alive:
// an orphan comes back without a signal (only its death sends SIGCHLD).
const ScanInterval = time.Second

// StopTimeout bounds how long Run, once its context ended, waits for the
// orphans it killed to exit.
const StopTimeout = 5 * time.Second

// maxExited bounds the exited workers remembered, to tell which worker an
// orphan that comes back late was left by.
const maxExited = 4 * protocol.MaxWorkers

// Config configures a Reaper. Zero fields are no-ops.
type Config struct {
	Log *slog.Logger
	// Track and Untrack, when set, are told each orphan the reaper follows
	// and forgets (the keeper kills what is tracked if the master dies).
	// They are called from Run's goroutine and must not block.
	Track   func(pid int, start uint64)
	Untrack func(pid int)
}

// Reaper reaps the processes re-parented to this one, kills those whose
// worker has exited, and never touches a child that another part of the
// process waits for. Create it with New; Run is its one goroutine; the
// other methods are safe from any goroutine.
type Reaper struct {
	cfg  Config
	log  *slog.Logger
	role Role
	self int
	pgrp int

	// forks is held shared while a process is started and recorded as
	// this process's own, and exclusively by a scan: a child that exits at
	// once is never taken for an orphan before it is recorded.
	forks sync.RWMutex
	mu    sync.Mutex // guards own and the worker tables
	own   map[int]*owned
	// byKey lists the workers of each generation and slot, in the order
	// they started; exited the exited ones, oldest first.
	byKey  map[workerKey][]*owned
	exited []*owned

	reqs    chan exitRequest
	done    chan struct{}
	running bool // Run has started; under mu
	ended   bool // Run has returned; under mu
	// orphans and scans are Run's.
	orphans map[int]*orphan
	scans   int
}

// Role is how this process came to reap orphans.
type Role int

const (
	// None: neither PID 1 nor a subreaper (prctl refused); orphans go to
	// an ancestor, as without hotcluster.
	None Role = iota
	// PID1: the first process of a PID namespace (a container's), which
	// the kernel gives every orphan of the namespace.
	PID1
	// Subreaper: PR_SET_CHILD_SUBREAPER, which gets the orphans among its
	// descendants.
	Subreaper
)

func (r Role) String() string {
	return [...]string{"none", "PID 1", "child subreaper"}[r]
}

type workerKey struct {
	gen  uint64
	slot int
}

// owned is a child of this process that some part of it waits for; for a
// worker, also its generation and slot.
type owned struct {
	pid    int
	start  uint64
	worker bool
	key    workerKey
	exited bool
}

func (o *owned) String() string {
	return fmt.Sprintf("gen %d worker %d (pid %d)", o.key.gen, o.key.slot, o.pid)
}

// orphan is a process re-parented to this one, and the worker it is
// known to come from (nil: unknown).
type orphan struct {
	pid    int
	start  uint64
	comm   string
	from   *owned
	killed bool
}

func (o *orphan) String() string {
	s := fmt.Sprintf("pid %d (%s)", o.pid, o.comm)
	if o.from != nil {
		s += ", left by " + o.from.String()
	}
	return s
}

type exitRequest struct {
	pid  int
	done chan struct{}
}

// New makes this process a reaper of orphans: as PID 1 it is one
// already; otherwise it asks to be a child subreaper. A kernel that
// refuses (before 3.4) leaves it a Reaper of Role None, which still keeps
// the books of its children.
func New(cfg Config) *Reaper {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r := &Reaper{
		cfg: cfg, log: cfg.Log, self: os.Getpid(), pgrp: unix.Getpgrp(),
		own: make(map[int]*owned), byKey: make(map[workerKey][]*owned),
		reqs: make(chan exitRequest), done: make(chan struct{}), orphans: make(map[int]*orphan),
	}
	switch {
	case r.self == 1:
		r.role = PID1
	case unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == nil:
		r.role = Subreaper
	}
	return r
}

// Role says how this process reaps orphans.
func (r *Reaper) Role() Role { return r.role }

// Fork calls fork, which starts one process and returns its PID, and
// records the process as this one's own: the reaper never waits for it.
// Whoever called Fork waits for it.
func (r *Reaper) Fork(fork func() (int, error)) (int, error) {
	return r.fork(fork, false, workerKey{})
}

// ForkWorker is Fork for a worker of generation gen and slot: what it
// leaves behind is known as its (see WorkerExited).
func (r *Reaper) ForkWorker(gen uint64, slot int, fork func() (int, error)) (int, error) {
	return r.fork(fork, true, workerKey{gen, slot})
}

func (r *Reaper) fork(fork func() (int, error), worker bool, key workerKey) (int, error) {
	r.forks.RLock()
	defer r.forks.RUnlock()
	pid, err := fork()
	if err != nil {
		return pid, err
	}
	o := &owned{pid: pid, start: startTime(pid), worker: worker, key: key}
	r.mu.Lock()
	r.own[pid] = o
	if worker {
		r.byKey[key] = append(r.byKey[key], o)
	}
	r.mu.Unlock()
	return pid, nil
}

// WorkerExited tells that worker pid has exited (it need not be reaped
// yet): the orphans it left are killed before WorkerExited returns, or
// once they come back. It returns at once if Run is not running.
func (r *Reaper) WorkerExited(ctx context.Context, pid int) {
	r.mu.Lock()
	if o := r.own[pid]; o != nil && o.worker && !o.exited {
		o.exited = true
		r.exited = append(r.exited, o)
		if len(r.exited) > maxExited {
			r.forgetLocked(r.exited[0])
			r.exited = r.exited[1:]
		}
	}
	running := r.running && !r.ended
	r.mu.Unlock()
	if !running {
		return
	}
	req := exitRequest{pid: pid, done: make(chan struct{})}
	select {
	case r.reqs <- req:
	case <-r.done:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-req.done:
	case <-r.done:
	case <-ctx.Done():
	}
}

// forgetLocked drops an exited worker from the tables.
func (r *Reaper) forgetLocked(o *owned) {
	if r.own[o.pid] == o {
		delete(r.own, o.pid)
	}
	r.byKey[o.key] = slices.DeleteFunc(r.byKey[o.key], func(x *owned) bool { return x == o })
	if len(r.byKey[o.key]) == 0 {
		delete(r.byKey, o.key)
	}
}

// Run reaps orphans as they exit, looks for living ones every
// ScanInterval, and kills those whose worker has exited, until ctx ends;
// then it kills every orphan left (the instance stops: nothing it started
// outlives it), waits for them (at most StopTimeout) and returns.
func (r *Reaper) Run(ctx context.Context) {
	r.mu.Lock()
	r.running = true
	r.mu.Unlock()
	defer close(r.done)
	defer func() {
		r.mu.Lock()
		r.ended = true
		r.mu.Unlock()
	}()
	sigc, stop := signals.ChildExits()
	defer stop()
	tick := time.NewTicker(ScanInterval)
	defer tick.Stop()
	r.scan()
	for {
		select {
		case <-ctx.Done():
			r.stopAll(sigc)
			return
		case <-sigc:
			r.scan()
		case <-tick.C:
			r.scan()
		case req := <-r.reqs:
			// Every worker that exited meanwhile, in one scan.
			reqs := []exitRequest{req}
			for more := true; more; {
				select {
				case q := <-r.reqs:
					reqs = append(reqs, q)
				default:
					more = false
				}
			}
			r.scan()
			for _, q := range reqs {
				close(q.done)
			}
		}
	}
}

// scan looks at every child: it reaps the orphans that exited, follows
// the new ones, and kills those whose worker has exited.
func (r *Reaper) scan() {
	r.forks.Lock()
	defer r.forks.Unlock()
	r.scans++
	if r.scans%64 == 0 {
		r.pruneOwn()
	}
	seen := make(map[int]bool)
	for _, pid := range children() {
		r.mu.Lock()
		_, mine := r.own[pid]
		r.mu.Unlock()
		if mine || seen[pid] {
			continue
		}
		seen[pid] = true
		st, err := readStat(pid)
		if err != nil || st.ppid != r.self {
			continue
		}
		if st.pgrp == r.pgrp {
			// Started by this process without a group of its own: not a
			// worker's leftover (workers lead their groups), but a child
			// that part of this process waits for, such as the new master
			// of an upgrade (tableflip uses os.StartProcess).
			continue
		}
		o := r.orphans[pid]
		if o == nil || o.start != st.start {
			o = &orphan{pid: pid, start: st.start, comm: st.comm, from: r.attribute(pid, st)}
			r.orphans[pid] = o
			if r.cfg.Track != nil && st.state != 'Z' {
				r.cfg.Track(pid, st.start)
			}
		}
		o.comm = st.comm // it may have exec'd since
		if st.state == 'Z' {
			r.reap(o)
			continue
		}

		r.mu.Lock()
		dead := o.from != nil && o.from.exited
		r.mu.Unlock()
		if dead && !o.killed {
			o.killed = true
			unix.Kill(pid, unix.SIGKILL)
			r.log.Info(fmt.Sprintf("killed %s: that worker has exited, and nothing a worker starts outlives it", o))
		}
	}
	for pid, o := range r.orphans {
		if !seen[pid] {
			// Gone without this reaper: someone else reaped it, or it was
			// not seen in a children list read while it changed.
			if _, err := readStat(pid); err != nil {
				r.forget(o)
			}
		}
	}
}

// attribute finds the worker an orphan was left by: the one whose process
// group it is in, or the one named by the worker contract's variables in
// its environment (every descendant that keeps its environment has them:
// shells, npm, node, python), the latest of that slot to start before it.
func (r *Reaper) attribute(pid int, st stat) *owned {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.own[st.pgrp]; o != nil && o.worker {
		return o
	}
	env := environ(pid, protocol.EnvGeneration, protocol.EnvWorkerID)
	gen, err1 := strconv.ParseUint(env[0], 10, 64)
	slot, err2 := strconv.Atoi(env[1])
	if err1 != nil || err2 != nil {
		return nil
	}
	var best *owned
	for _, o := range r.byKey[workerKey{gen, slot}] {
		if o.start <= st.start && (best == nil || o.start >= best.start) {
			best = o
		}
	}
	return best
}

// reap waits for an orphan that exited: that PID only, never any child.
func (r *Reaper) reap(o *orphan) {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(o.pid, &ws, syscall.WNOHANG, nil)
		if !errors.Is(err, syscall.EINTR) {
			if err != nil {
				r.log.Warn(fmt.Sprintf("reap %s: %v", o, err))
			} else {
				r.log.Debug(fmt.Sprintf("reaped %s: %s", o, describe(ws)))
			}
			break
		}
	}
	r.forget(o)
}

func (r *Reaper) forget(o *orphan) {
	delete(r.orphans, o.pid)
	if r.cfg.Untrack != nil {
		r.cfg.Untrack(o.pid)
	}
}

// pruneOwn drops the records of children that are gone or whose PID now
// names another process: their owner has reaped them.
func (r *Reaper) pruneOwn() {
	r.mu.Lock()
	var check []*owned
	for _, o := range r.own {
		if !o.worker || o.exited {
			check = append(check, o)
		}
	}
	r.mu.Unlock()
	for _, o := range check {
		if st, err := readStat(o.pid); err != nil || st.start != o.start || st.ppid != r.self {
			// An exited worker stays in the worker tables, for the
			// orphans it left that come back later (maxExited bounds
			// them); its PID is free again.
			r.mu.Lock()
			if r.own[o.pid] == o {
				delete(r.own, o.pid)
			}
			r.mu.Unlock()
		}
	}
}

// stopAll kills every orphan left and reaps them, at most StopTimeout.
func (r *Reaper) stopAll(sigc <-chan os.Signal) {
	r.scan()
	var killed []string
	for _, o := range r.orphans {
		if !o.killed {
			o.killed = true
			unix.Kill(o.pid, unix.SIGKILL)
			killed = append(killed, o.String())
		}
	}
	if len(killed) > 0 {
		slices.Sort(killed)
		r.log.Info(fmt.Sprintf("stopping: killed %d processes the workers left: %s", len(killed), strings.Join(killed, "; ")))
	}
	deadline := time.NewTimer(StopTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for len(r.orphans) > 0 {
		select {
		case <-sigc:
		case <-tick.C:
		case <-deadline.C:
			left := make([]string, 0, len(r.orphans))
			for _, o := range r.orphans {
				left = append(left, o.String())
			}
			r.log.Warn(fmt.Sprintf("stopping: %d processes the workers left are still there %s after SIGKILL: %s", len(left), StopTimeout, strings.Join(left, "; ")))
			return
		}
		r.scan()
	}
}

// describe says how a process ended.
func describe(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return "ended"
}
