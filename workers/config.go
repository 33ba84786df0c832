package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// ReadyMode says when a worker counts as ready.
type ReadyMode int

const (
	// ReadyAuto waits for READY=1 from a worker that speaks the notify
	// protocol; one that does not is ready once it is listening (it called
	// listen(2) on the socket of every listener, inherited or given to its
	// own bind, or for a datagram listener bound it itself: see
	// Config.Intercept), or else after ReadyDelay of life. A
	// worker speaks the protocol once it sent anything on its notify
	// socket, or once any worker of this master has sent READY=1: from
	// then on every generation waits for READY=1, so a program that
	// reports readiness is never cut over before it reports (at worst, the
	// first generation of a program that listens, or is silent for longer
	// than ReadyDelay, before it reports is taken as ready early; it
	// receives connections that wait in the kernel's backlog).
	ReadyAuto ReadyMode = iota
	// ReadyNotify waits for READY=1 on the notify socket.
	ReadyNotify
	// ReadyDelay takes a worker that stayed alive for ReadyDelay as ready.
	ReadyDelay
)

// ParseReadyMode parses "auto", "notify" or "delay".
func ParseReadyMode(s string) (ReadyMode, error) {
	switch s {
	case "auto", "":
		return ReadyAuto, nil
	case "notify":
		return ReadyNotify, nil
	case "delay":
		return ReadyDelay, nil
	}
	return 0, fmt.Errorf("ready mode %q: want auto, notify or delay", s)
}

func (m ReadyMode) String() string {
	return [...]string{"auto", "notify", "delay"}[m]
}

// Defaults for [Config].
const (
	DefaultReadyDelay   = time.Second
	DefaultReadyTimeout = time.Minute
	DefaultDrainTimeout = 30 * time.Second
	DefaultStopSignal   = syscall.SIGTERM
	// DefaultMaxRestarts serving-worker restarts of one slot within
	// DefaultRestartWindow are allowed; the next crash gives the slot up
	// (see Config.MaxRestarts).
	DefaultMaxRestarts   = 5
	DefaultRestartWindow = time.Minute
)

// FirstGenerationGrace is how long after the first generation became ready
// a worker's crash still counts as a failed start: a program taken as
// ready by --ready-delay that dies soon after (nginx retrying its bind for
// 2.5 s) did not start. Not for a master started by an upgrade, whose
// predecessor is already draining, nor for a worker killed from outside
// (SIGKILL, SIGTERM, SIGINT: the OOM killer, an operator), which is
// respawned as ever.
const FirstGenerationGrace = 5 * time.Second

// hungKillAfter is how long a hung worker has, after SIGABRT (which makes
// a Go program print every goroutine's stack), before it gets SIGKILL.
const hungKillAfter = 2 * time.Second

// Sockets gives generations their listening sockets and moves the traffic
// between them (package handoff implements it).
type Sockets interface {
	// Names lists the listeners, as LISTEN_FDNAMES names them.
	Names() []string
	// Files returns one close-on-exec descriptor per listener for the
	// worker in slot of generation gen; the caller closes them. A listener
	// may give each slot a socket of its own; the generation then serves
	// the slots Files was called for, up to Serve.
	Files(gen uint64, slot int) ([]*os.File, error)
	// Serve sets the slots of gen whose sockets get new connections, where
	// each slot has a socket of its own: the pool leaves out a slot whose
	// worker is down or about to stop. Files puts a slot back.
	Serve(gen uint64, slots []int) error
	// Activate moves new connections to gen and returns once the sockets of
	// older generations have nothing left their workers must serve.
	Activate(ctx context.Context, gen uint64) error
	// Move moves the new connections of slots to gen's sockets of those
	// slots, the other slots staying where they are (a rolling reload, or
	// its rollback), and returns once the sockets that had them are quiet;
	// once every slot is gen's, gen is the active generation. An error
	// with a Moved method that returns true means the traffic moved but
	// the wait ran out; any other, that it did not move.
	Move(ctx context.Context, gen uint64, slots []int) error
	// Release tells that gen has no worker left.
	Release(gen uint64)
	// Inodes returns the inode of each socket Files(gen, slot) hands out, in
	// order (0: unknown), so that the pool can see whether a worker still
	// holds one.
	Inodes(gen uint64, slot int) []uint64
	// Describe names each listener for messages, e.g. web=127.0.0.1:8080.
	Describe() []string
}

// Leftovers keeps what a worker starts from outliving it: whatever
// detached from the worker's process group (a new session, a double fork)
// and whatever is left once the master is gone (package internal/master
// implements it with a cgroup per worker, the reaper of orphans and the
// keeper). The pool calls it from its forker thread and from the goroutine
// that reaps each worker.
type Leftovers interface {
	// Start starts worker (gen, slot) by calling fork with a descriptor of
	// the cgroup to start it in (-1: none) and returns its PID. The worker
	// is the pool's to wait for: nothing else reaps it.
	Start(gen uint64, slot int, fork func(cgroupFD int) (int, error)) (int, error)
	// Exited is told that worker pid has exited, before the pool reaps it
	// (so the PID stays its): what it left is killed before Exited
	// returns, within a bound of its own.
	Exited(gen uint64, slot int, pid int)
	// Own starts a process that is not a worker (a development build) by
	// calling fork, as one whose owner waits for it.
	Own(fork func() (int, error)) (int, error)
}

// Command is what a generation runs.
type Command struct {
	// Path is the resolved executable (see ResolveCommand).
	Path string
	// Args is its argv, Args[0] included.
	Args []string
}

// Config describes the worker group. Zero fields take the defaults.
type Config struct {
	// Command is what the first generation runs. When its Path is empty,
	// Run starts no generation until a Reload gives one.
	Command Command
	Dir     string
	// Env holds K=V entries added to the master's environment.
	Env []string
	// Workers is the group size; default runtime.NumCPU().
	Workers int
	// Sockets may be nil for a pool of background-job workers.
	Sockets Sockets

	Ready        ReadyMode
	ReadyDelay   time.Duration
	ReadyTimeout time.Duration
	DrainTimeout time.Duration
	StopSignal   syscall.Signal

	BackoffMin, BackoffMax time.Duration
	// MaxRestarts is how many times a serving worker's slot is respawned
	// within RestartWindow; the next crash gives the slot up (it stays
	// empty, shown as errored) until a new generation serves. Negative:
	// no limit. Zero fields take DefaultMaxRestarts and
	// DefaultRestartWindow.
	MaxRestarts   int
	RestartWindow time.Duration
	// Watchdog, when set, is the interval within which each ready worker
	// must send WATCHDOG=1 on its notify socket (it finds it in
	// WATCHDOG_USEC); one that misses it is hung: it is replaced, then
	// aborted.
	Watchdog time.Duration

	// Lines receives every line the workers print (see Line), from the
	// goroutine that reads that worker's output, so it must neither block
	// nor keep Line.Text after it returns: the master queues, formats and
	// drops there (package internal/logs). By default each line is written
	// to Output as "[gN wS] text".
	Lines func(Line)
	// Output receives the default Lines and Log; default os.Stderr.
	Output io.Writer
	// RuntimeDir is where the private directory of notify sockets is made;
	// default $XDG_RUNTIME_DIR, else the system's temporary directory. It
	// must be a directory no other user can change, or have the sticky bit
	// (as /tmp); see package internal/safedir.
	RuntimeDir string
	// Credential, when set, runs the workers as another user and group
	// (the master keeps the sockets: bind :80 as root, serve as www-data).
	// Each worker's notify socket (0600) is then given to that user, in a
	// directory that stays the master's: the workers' user may enter it
	// but neither list it nor plant or swap a name in it.
	Credential *syscall.Credential
	// FirstGeneration numbers the first generation (default 1): a master
	// started by an upgrade continues its predecessor's numbers.
	FirstGeneration uint64
	// KeepGoing keeps Run going when the first generation fails (the
	// development loop waits for the next build); by default Run returns
	// the failure.
	KeepGoing bool
	// IPC says which workers get a message channel (see IPCMode).
	IPC IPCMode
	// Intercept says whether a worker that binds a listener's address
	// itself gets the master's socket, and whether its listen(2) calls are
	// seen (see InterceptMode and package internal/intercept). Only with
	// Sockets.
	Intercept InterceptMode
	// Log receives the pool's own lines, at the level of each (error for
	// failures, warn for what an operator should look at, info for the
	// rest); default a text logger on Output.
	Log *slog.Logger
	// OnEvent, when set, is called from the pool's goroutine for each
	// Event. It must not block.
	OnEvent func(Event)
	// BeforeStop, when set, is called on the pool's goroutine just before a
	// worker is sent its stop signal (after its WorkerDraining event), with
	// whether it said it drains keep-alive itself; the signal goes after
	// the delay it returns (at most MaxStopDelay; the drain timeout counts
	// from then). The master's keep-alive rescue holds the worker's
	// connections here. It must do only bounded work.
	BeforeStop func(pid int, drainsKeepAlive bool) time.Duration
	// Leftovers, when set, starts each worker and is told of its exit;
	// nil: at a worker's exit only its process group is killed.
	Leftovers Leftovers
	// Rollout, when set, makes a reload replace that many slots at a time
	// (see Rollout and rollout); the zero value replaces the whole
	// generation at once. Its Sockets must be able to Move (a socket per
	// slot): the master refuses it otherwise.
	Rollout Rollout
}

// New checks cfg and returns a pool that has started no process yet (but
// the thread it will start them from: call Run).
func New(cfg Config) (*Pool, error) {
	if cfg.Command.Path != "" && len(cfg.Command.Args) == 0 {
		return nil, errors.New("workers: command without argv")
	}
	if cfg.Workers < 0 {
		return nil, fmt.Errorf("workers: %d workers: want 1 or more", cfg.Workers)
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.ReadyDelay <= 0 {
		cfg.ReadyDelay = DefaultReadyDelay
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.StopSignal == 0 {
		cfg.StopSignal = DefaultStopSignal
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.MaxRestarts == 0 {
		cfg.MaxRestarts = DefaultMaxRestarts
	}
	if cfg.RestartWindow <= 0 {
		cfg.RestartWindow = DefaultRestartWindow
	}
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	if cfg.RuntimeDir == "" && cfg.Credential == nil {
		// Not for workers of another user: a runtime directory is 0700.
		cfg.RuntimeDir = os.Getenv("XDG_RUNTIME_DIR")
	}
	if cfg.RuntimeDir == "" {
		cfg.RuntimeDir = os.TempDir()
	}
	out := &lineWriter{w: cfg.Output}
	if cfg.Lines == nil {
		cfg.Lines = out.line
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(out, nil))
	}
	p := &Pool{
		cfg:         cfg,
		baseEnv:     os.Environ(),
		log:         cfg.Log,
		reqs:        make(chan request),
		events:      make(chan loopEvent, 64),
		forker:      startForker(),
		readyC:      make(chan struct{}),
		done:        make(chan struct{}),
		size:        cfg.Workers,
		gens:        make(map[uint64]*generation),
		activations: make(map[*generation]context.CancelFunc),
		crashes:     make(map[int]int),
		restartLog:  make(map[int][]time.Time),
		errored:     make(map[int]erroredSlot),
		cmd:         cfg.Command,
		env:         cfg.Env,
		gen:         max(cfg.FirstGeneration, 1) - 1,
	}
	p.spawnFn = p.spawn
	return p, nil
}

// Update changes what the next generations run; zero fields keep theirs.
type Update struct {
	Command *Command
	// Env replaces Config.Env when not nil.
	Env          []string
	Workers      int
	ReadyDelay   time.Duration
	ReadyTimeout time.Duration
	DrainTimeout time.Duration
	// Rollout replaces Config.Rollout when not nil.
	Rollout *Rollout
}

// apply makes u the settings of the generations started from now on.
func (p *Pool) apply(u *Update) {
	if u == nil {
		return
	}
	if u.Command != nil {
		p.cmd = *u.Command
	}
	if u.Env != nil {
		p.env = slices.Clone(u.Env)
	}
	if u.Workers > 0 && u.Workers != p.size {
		p.logf(slog.LevelInfo, nil, "workers: %d from the next generation on (was %d)", u.Workers, p.size)
		p.size = u.Workers
	}
	if u.ReadyDelay > 0 {
		p.cfg.ReadyDelay = u.ReadyDelay
	}
	if u.ReadyTimeout > 0 {
		p.cfg.ReadyTimeout = u.ReadyTimeout
	}
	if u.DrainTimeout > 0 {
		p.cfg.DrainTimeout = u.DrainTimeout
	}
	if u.Rollout != nil {
		p.cfg.Rollout = *u.Rollout
	}
}
