package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/logfmt"
	"github.com/hotcluster/hotcluster/internal/protocol"
	"github.com/hotcluster/hotcluster/internal/safedir"
)

// logPrefix starts each of the pool's own lines in text format.
const logPrefix = "hotcluster: "

// selfExe is how a worker's shim re-executes hotcluster's own binary. It
// stays valid when the file on disk was replaced or removed.
const selfExe = "/proc/self/exe"

// ReadyMode says when a worker counts as ready.
type ReadyMode int

const (
	// ReadyAuto waits for READY=1 from a worker that speaks the notify
	// protocol, and for ReadyDelay of life from one that does not. A worker
	// speaks the protocol once it sent anything on its notify socket, or
	// once any worker of this master has sent READY=1: from then on every
	// generation waits for READY=1, so a program that reports readiness is
	// never cut over before it reports (at worst, the first generation of a
	// program that is silent for longer than ReadyDelay is taken as ready
	// early; it receives connections that wait in the kernel's backlog).
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
	// Files returns one close-on-exec descriptor per listener for a worker
	// of generation gen; the caller closes them.
	Files(gen uint64) ([]*os.File, error)
	// Activate moves new connections to gen and returns once the sockets of
	// older generations have nothing left their workers must serve.
	Activate(ctx context.Context, gen uint64) error
	// Release tells that gen has no worker left.
	Release(gen uint64)
	// Inodes returns the inode of each socket Files(gen) hands out, in
	// order (0: unknown), so that the pool can see whether a worker still
	// holds one.
	Inodes(gen uint64) []uint64
	// Describe names each listener for messages, e.g. web=127.0.0.1:8080.
	Describe() []string
}

// Command is what a generation runs.
type Command struct {
	// Path is the resolved executable (see ResolveCommand).
	Path string
	// Args is its argv, Args[0] included.
	Args []string
}

// EventKind names what happened to a generation or a worker.
type EventKind int

// The events reported to Config.OnEvent.
const (
	// GenStarting: the generation's workers are being started.
	GenStarting EventKind = iota + 1
	// GenReady: the generation serves; Took is from its start.
	GenReady
	// GenFailed: the generation never served; Err says why.
	GenFailed
	// GenDone: every worker of the generation has exited.
	GenDone
	// WorkerStarted: a worker process was forked (Slot, PID).
	WorkerStarted
	// WorkerReady: a worker reported ready, or counted as ready.
	WorkerReady
	// WorkerDraining: a worker was sent the stop signal; Err says why.
	WorkerDraining
	// WorkerExited: a worker exited; Err describes its status, Took its
	// lifetime.
	WorkerExited
	// WorkerRespawn: a worker of the serving generation died and its slot
	// is started again (after Took of back-off).
	WorkerRespawn
	// WorkerRecycle: a worker is being replaced (Err says why): its
	// replacement starts, and the worker drains once that is ready.
	WorkerRecycle
	// WorkerDisconnect: a worker's message channel closed.
	WorkerDisconnect
	// WorkerMessage: a worker sent Message on its channel.
	WorkerMessage
	// Scaled: the group's size changed to Workers.
	Scaled
	// WorkerErrored: a serving worker's slot crashed more than
	// Config.MaxRestarts times within Config.RestartWindow and is given up
	// until the next generation; Err says why.
	WorkerErrored
	// WorkerHung: a worker missed its watchdog deadline (Config.Watchdog);
	// it is replaced and aborted.
	WorkerHung
	// GenErrored: no worker of the serving generation is left: every slot
	// was given up. The sockets stay open; a reload starts afresh.
	GenErrored
)

var eventNames = [...]string{
	GenStarting: "reload-start", GenReady: "reload-done", GenFailed: "reload-failed", GenDone: "drained",
	WorkerStarted: "fork", WorkerReady: "ready", WorkerDraining: "draining", WorkerExited: "exit",
	WorkerRespawn: "respawn", WorkerRecycle: "recycle", WorkerDisconnect: "disconnect",
	WorkerMessage: "message", Scaled: "scale", WorkerErrored: "slot-errored", WorkerHung: "hung",
	GenErrored: "errored",
}

// String is the event's name on the control socket, after Node's cluster
// events where one matches (fork, disconnect, exit).
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is a change in a generation's or a worker's life.
type Event struct {
	Kind EventKind
	Gen  uint64
	// Command is the generation's command (generation events).
	Command Command
	// Workers is the generation's size (GenStarting, GenReady, Scaled).
	Workers int
	// Slot and PID name the worker of worker events.
	Slot, PID int
	Took      time.Duration
	Err       string
	// Message is a worker's message (WorkerMessage).
	Message json.RawMessage
}

// Config describes the worker group. Zero fields take the defaults.
type Config struct {
	// Command is what the first generation runs. When its Path is empty,
	// Run starts no generation until ReloadWith gives one.
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

	// Output receives the workers' prefixed lines and the pool's log;
	// default os.Stderr.
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
	// Color prefixes each worker's lines with a colour of its slot.
	Color bool
	// IPC says which workers get a message channel (see IPCMode).
	IPC IPCMode
	// QuietReady leaves the "gen N ready" line to the caller, which says
	// more (the development loop: build time, files changed).
	QuietReady bool
	// JSONLog writes the pool's own lines (not the workers') as JSON
	// objects, one per line (see package internal/logfmt).
	JSONLog bool
	// OnEvent, when set, is called from the pool's goroutine for each
	// Event. It must not block.
	OnEvent func(Event)
}

// Pool supervises generations of workers. Create it with New, run it with
// Run; its other methods are safe to call from any goroutine, before, during
// or after Run.
type Pool struct {
	cfg     Config
	baseEnv []string
	out     *lineWriter
	log     *log.Logger

	reqs      chan request
	events    chan any
	readyC    chan struct{}
	readyOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup // goroutines that send on events

	// Loop state, owned by the goroutine running Run.
	notifyDir *safedir.Dir
	seq       int
	size      int
	gen       uint64
	gens      map[uint64]*generation
	current   *generation
	pending   *generation
	queued    bool // a reload was asked for during a turnover
	stopping  bool
	speaks    bool // a worker of this master sent READY=1
	fatal     error
	crashes   map[int]int // consecutive crashes per slot
	// activations are the generations the traffic is moving to, with what
	// cancels their Sockets.Activate.
	activations map[*generation]context.CancelFunc
	cmd         Command     // of the next generation
	env         []string    // of the next generation (Config.Env, or an Update's)
	restarts    map[int]int // respawns per slot, for status
	// restartLog holds the times of each slot's recent respawns, for
	// MaxRestarts; errored the slots given up, with why.
	restartLog map[int][]time.Time
	errored    map[int]erroredSlot
	// unreadable: /proc did not tell what a worker holds; said once.
	unreadable bool
	lastExit   map[int]string // per slot
	waiters    []chan<- Event // reloads queued behind a turnover, for their outcome
	lastReload *Event         // the last GenReady or GenFailed after the first
	started    time.Time
}

type genState int

const (
	genStarting genState = iota
	genActivating
	genServing
	genDraining
	genFailed
)

type generation struct {
	num     uint64
	size    int
	cmd     Command
	env     []string
	state   genState
	started time.Time
	// first: it is the first generation this master served, readyAt when
	// it began to.
	first   bool
	readyAt time.Time
	workers map[int]*worker // live workers by slot
	// standby holds replacements being started for workers of a serving
	// generation (Recycle), by slot; each takes its slot once ready.
	standby map[int]*worker
	timeout *time.Timer
	waiters []chan<- Event // reloads waiting for this generation's outcome
}

// empty: no worker of g, standbys included, is left.
func (g *generation) empty() bool { return len(g.workers) == 0 && len(g.standby) == 0 }

// New checks cfg and returns a pool that has started nothing yet.
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
	var logOut io.Writer = out
	if cfg.JSONLog {
		logOut = logfmt.JSON(out, logPrefix)
	}
	return &Pool{
		cfg:         cfg,
		baseEnv:     os.Environ(),
		out:         out,
		log:         log.New(logOut, logPrefix, 0),
		reqs:        make(chan request),
		events:      make(chan any, 64),
		readyC:      make(chan struct{}),
		done:        make(chan struct{}),
		size:        cfg.Workers,
		gens:        make(map[uint64]*generation),
		activations: make(map[*generation]context.CancelFunc),
		crashes:     make(map[int]int),
		restarts:    make(map[int]int),
		restartLog:  make(map[int][]time.Time),
		errored:     make(map[int]erroredSlot),
		lastExit:    make(map[int]string),
		cmd:         cfg.Command,
		env:         cfg.Env,
		gen:         max(cfg.FirstGeneration, 1) - 1,
	}, nil
}

// Logger returns the logger that writes the pool's lines, so that other
// parts of the master write to the same place without interleaving.
func (p *Pool) Logger() *log.Logger { return p.log }

// Ready is closed once the first generation serves.
func (p *Pool) Ready() <-chan struct{} { return p.readyC }

// Done is closed when Run has returned.
func (p *Pool) Done() <-chan struct{} { return p.done }

type request struct {
	kind    requestKind
	update  *Update      // reqReload: what changes from the new generation on
	outcome chan<- Event // reqReload: gets GenReady or GenFailed, if set
	status  chan<- Status
	message *message
	recycle recycle
}

type requestKind int

const (
	reqReload requestKind = iota
	reqScaleUp
	reqScaleDown
	reqStop
	reqForceStop
	reqStatus
	reqSend
	reqRecycle
)

// send hands r to the loop; false once the loop has ended.
func (p *Pool) send(r request) bool {
	select {
	case p.reqs <- r:
		return true
	case <-p.done:
		return false
	}
}

// Reload starts a new generation; the old one drains once it is ready.
// Reloads asked for during a turnover coalesce into one more turnover.
func (p *Pool) Reload() { p.send(request{kind: reqReload}) }

// ReloadWith is Reload with a new command for the new generation and the
// ones after it. Of reloads that coalesce, the last command wins. On a pool
// that started without a command, it starts the first generation.
func (p *Pool) ReloadWith(cmd Command) {
	p.send(request{kind: reqReload, update: &Update{Command: &cmd}})
}

// Scale adds (delta > 0) or removes workers, one slot at a time.
func (p *Pool) Scale(delta int) {
	for ; delta > 0; delta-- {
		p.send(request{kind: reqScaleUp})
	}
	for ; delta < 0; delta++ {
		p.send(request{kind: reqScaleDown})
	}
}

// Stop drains every worker; Run then returns.
func (p *Pool) Stop() { p.send(request{kind: reqStop}) }

// ForceStop kills every worker at once; Run then returns.
func (p *Pool) ForceStop() { p.send(request{kind: reqForceStop}) }

// Events sent to the loop by the workers' goroutines and timers.
type (
	exitEvent struct {
		w     *worker
		err   error
		state *os.ProcessState
	}
	notifyEvent struct {
		w   *worker
		msg string
	}
	delayEvent      struct{ w *worker }
	drainEvent      struct{ w *worker }
	genTimeoutEvent struct{ g *generation }
	respawnEvent    struct {
		gen  uint64
		slot int
	}
	activatedEvent struct {
		g   *generation
		err error
	}
)

// post delivers e from a timer; it gives up once the loop has ended.
func (p *Pool) post(e any) {
	select {
	case p.events <- e:
	case <-p.done:
	}
}

func (p *Pool) after(d time.Duration, e any) *time.Timer {
	return time.AfterFunc(d, func() { p.post(e) })
}

// Run starts the first generation and supervises until Stop, ForceStop or
// the end of ctx (a graceful stop), and returns once every worker has
// exited. It returns an error when the first generation could not start.
func (p *Pool) Run(ctx context.Context) error {
	defer close(p.done)
	// The master's own directory, made exclusively, so that no name in it
	// can be planted or swapped by anyone else: the master binds, chowns
	// and removes names in it as root (see spawn). Workers of another
	// user may only enter it, to reach their own sockets.
	perm := fs.FileMode(0o700)
	if p.cfg.Credential != nil {
		perm = 0o711
	}
	dir, err := safedir.MkdirTemp(p.cfg.RuntimeDir, "hotcluster-", perm)
	if err != nil {
		return fmt.Errorf("workers: notify socket directory: %w", err)
	}
	p.notifyDir = dir
	p.started = time.Now()
	// Deferred before anything can fail, and so run after p.wg.Wait: no
	// worker goroutine uses the directory any more.
	defer func() {
		os.RemoveAll(dir.Path())
		dir.Close()
	}()
	if c := p.cfg.Credential; c != nil {
		if err := reachable(dir.Path(), c.Uid); err != nil {
			return err
		}
	}

	if p.cmd.Path != "" {
		p.startGeneration()
	}
	ctxDone := ctx.Done()
	for !p.stopping || p.live() > 0 || len(p.activations) > 0 {
		select {
		case <-ctxDone:
			ctxDone = nil
			p.stop(false)
		case r := <-p.reqs:
			p.handleRequest(r)
		case e := <-p.events:
			p.handleEvent(e)
		}
	}
	p.wg.Wait()
	return p.fatal
}

func (p *Pool) live() int {
	n := 0
	for _, g := range p.gens {
		n += len(g.workers) + len(g.standby)
	}
	return n
}

func (p *Pool) handleRequest(r request) {
	switch r.kind {
	case reqReload:
		if p.stopping {
			reply(r.outcome, Event{Kind: GenFailed, Err: "the master is stopping"})
			return
		}
		p.apply(r.update)
		switch {
		case p.cmd.Path == "":
			reply(r.outcome, Event{Kind: GenFailed, Err: "no worker command yet (the first build has not succeeded)"})
		case p.pending != nil:
			p.queued = true
			if r.outcome != nil {
				p.waiters = append(p.waiters, r.outcome)
			}
		default:
			p.startGeneration()
			if r.outcome != nil {
				if g := p.gens[p.gen]; g != nil && g.state == genStarting {
					g.waiters = append(g.waiters, r.outcome)
				} else {
					reply(r.outcome, p.outcomeOf(p.gen))
				}
			}
		}
	case reqScaleUp:
		if p.stopping {
			return
		}
		if p.size >= protocol.MaxWorkers {
			p.log.Printf("scale up ignored: already at %d workers, the most a group may have", p.size)
			return
		}
		p.size++
		p.log.Printf("scale up to %s", workersN(p.size))
		p.emit(Event{Kind: Scaled, Gen: p.gen, Workers: p.size})
		p.reconcile()
	case reqScaleDown:
		if p.stopping {
			return
		}
		if p.size <= 1 {
			p.log.Printf("scale down ignored: already at 1 worker")
			return
		}
		p.size--
		p.log.Printf("scale down to %s", workersN(p.size))
		p.emit(Event{Kind: Scaled, Gen: p.gen, Workers: p.size})
		p.reconcile()
	case reqStop:
		p.stop(false)
	case reqForceStop:
		p.stop(true)
	case reqStatus:
		r.status <- p.snapshot()
	case reqSend:
		p.deliver(r.message)
	case reqRecycle:
		p.startRecycle(r.recycle)
	}
}

// startGeneration forks a new generation of p.size workers.
func (p *Pool) startGeneration() {
	p.gen++
	first := p.current == nil
	g := &generation{num: p.gen, size: p.size, cmd: p.cmd, env: p.env, started: time.Now(), workers: make(map[int]*worker), standby: make(map[int]*worker)}
	g.waiters, p.waiters = p.waiters, nil
	p.gens[g.num] = g
	p.pending = g
	if !first {
		p.log.Printf("gen %d: starting %s", g.num, workersN(g.size))
	}
	p.emit(Event{Kind: GenStarting, Gen: g.num, Command: g.cmd, Workers: g.size})
	for slot := 0; slot < g.size; slot++ {
		w, err := p.startWorker(g, slot, false)
		if err != nil {
			p.failGeneration(g, err.Error())
			return
		}
		g.workers[slot] = w
	}
	g.timeout = p.after(p.cfg.ReadyTimeout, genTimeoutEvent{g})
}

// startWorker forks a worker for g's slot. A standby (Recycle) waits for
// readiness like a worker of a new generation.
func (p *Pool) startWorker(g *generation, slot int, standby bool) (*worker, error) {
	s := spawnSpec{gen: g.num, slot: slot, size: p.size, cmd: g.cmd, env: g.env, ipc: ipcFor(p.cfg.IPC, g.cmd)}
	if p.cfg.Sockets != nil {
		files, err := p.cfg.Sockets.Files(g.num)
		if err != nil {
			return nil, err
		}
		s.files, s.names = files, p.cfg.Sockets.Names()
	}
	w, err := p.spawn(s)
	if err != nil {
		return nil, err
	}
	p.emit(Event{Kind: WorkerStarted, Gen: g.num, Slot: slot, PID: w.pid})
	if g.state == genStarting || standby {
		switch {
		case p.cfg.Ready == ReadyDelay, p.cfg.Ready == ReadyAuto && !p.speaks:
			w.delay = p.after(p.cfg.ReadyDelay, delayEvent{w})
		}
	} else {
		// Respawned or added to a serving generation: its socket already
		// has traffic, nothing waits for it.
		w.state = ready
		p.becameServing(w)
		p.emit(Event{Kind: WorkerReady, Gen: g.num, Slot: slot, PID: w.pid})
	}
	return w, nil
}

func (p *Pool) handleEvent(e any) {
	switch e := e.(type) {
	case exitEvent:
		p.exited(e)
	case notifyEvent:
		p.notified(e.w, e.msg)
	case delayEvent:
		w := e.w
		if w.state != starting || w.spoke && p.cfg.Ready != ReadyDelay {
			return
		}
		if p.cfg.Ready == ReadyAuto && p.speaks {
			return
		}
		p.becameReady(w)
	case drainEvent:
		if p.alive(e.w) {
			p.log.Printf("%s still running %s after the stop signal (--drain-timeout); killing it", e.w, p.cfg.DrainTimeout)
			e.w.signal(syscall.SIGKILL)
		}
	case watchdogEvent:
		p.watchdogFired(e.w)
	case abortEvent:
		if p.alive(e.w) {
			p.log.Printf("%s still running %s after SIGABRT; killing it", e.w, hungKillAfter)
			e.w.signal(syscall.SIGKILL)
		}
	case genTimeoutEvent:
		g := e.g
		if g.state != genStarting {
			return
		}
		var waiting []string
		for _, slot := range sortedSlots(g.workers) {
			if w := g.workers[slot]; w.state == starting {
				waiting = append(waiting, fmt.Sprintf("worker %d (pid %d)%s", slot, w.pid, w.tail.String()))
			}
		}
		p.failGeneration(g, fmt.Sprintf("not ready within --ready-timeout %s; still waiting for %s", p.cfg.ReadyTimeout, strings.Join(waiting, ", ")))
	case respawnEvent:
		g := p.gens[e.gen]
		if p.stopping || g == nil || g != p.current || e.slot >= p.size || g.workers[e.slot] != nil {
			return
		}
		if _, given := p.errored[e.slot]; given {
			return
		}
		w, err := p.startWorker(g, e.slot, false)
		if err != nil {
			p.crashes[e.slot]++
			d := backoff(p.crashes[e.slot], p.cfg.BackoffMin, p.cfg.BackoffMax)
			p.log.Printf("gen %d worker %d: %v; retrying in %s", g.num, e.slot, err, d.Round(time.Millisecond))
			p.after(d, respawnEvent{g.num, e.slot})
			return
		}
		g.workers[e.slot] = w
	case activatedEvent:
		p.activated(e.g, e.err)
	case messageEvent:
		p.received(e)
	case standbyTimeoutEvent:
		p.standbyTimedOut(e.w)
	case disconnectEvent:
		if p.alive(e.w) {
			p.emit(Event{Kind: WorkerDisconnect, Gen: e.w.gen, Slot: e.w.slot, PID: e.w.pid})
		}
	default:
		panic(fmt.Sprintf("workers: unknown event %T", e))
	}
}

func (p *Pool) alive(w *worker) bool {
	g := p.gens[w.gen]
	return g != nil && (g.workers[w.slot] == w || g.standby[w.slot] == w)
}

func (p *Pool) notified(w *worker, msg string) {
	w.spoke = true
	switch kind, value := parseNotify(msg); kind {
	case notifyReady:
		p.speaks = true
		if w.state == starting && p.cfg.Ready != ReadyDelay {
			p.becameReady(w)
		}
	case notifyStatus:
		w.status = value
	case notifyWatchdog:
		w.pinged = time.Now()
	case notifyWatchdogTrigger:
		if p.cfg.Watchdog > 0 && w.state == ready && !w.hung && p.alive(w) {
			p.hangs(w, "sent WATCHDOG=trigger")
		}
	}
}

// checkReady starts the traffic's move to g once all its workers are ready.
func (p *Pool) checkReady(g *generation) {
	if g == nil || g.state != genStarting || len(g.workers) < g.size {
		return
	}
	for _, w := range g.workers {
		if w.state != ready {
			return
		}
	}
	g.state = genActivating
	g.timeout.Stop()
	if p.cfg.Sockets == nil {
		p.activated(g, nil)
		return
	}
	p.activate(g)
}

// activate moves the traffic to g in a goroutine, which reports the end
// with an activatedEvent.
func (p *Pool) activate(g *generation) {
	ctx, cancel := context.WithCancel(context.Background())
	if old := p.activations[g]; old != nil {
		old()
	}
	p.activations[g] = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := p.cfg.Sockets.Activate(ctx, g.num)
		p.post(activatedEvent{g, err})
	}()
}

// failActivation fails g, a generation the traffic is moving to, and moves
// the traffic back to the serving generation, whose workers were not told
// to stop yet.
func (p *Pool) failActivation(g *generation, why string) {
	if cancel := p.activations[g]; cancel != nil {
		cancel()
		delete(p.activations, g)
	}
	g.state = genStarting
	p.failGeneration(g, why)
	if cur := p.current; cur != nil && cur.state == genServing && p.cfg.Sockets != nil {
		p.activate(cur)
	}
}

// activated makes g the serving generation and drains the previous one.
func (p *Pool) activated(g *generation, err error) {
	if cancel := p.activations[g]; cancel != nil {
		cancel()
		delete(p.activations, g)
	}
	if err != nil {
		p.log.Printf("gen %d: %v; moving on", g.num, err)
	}
	if p.pending == g {
		p.pending = nil
	}
	if g.state != genActivating {
		// Stopped meanwhile.
		return
	}
	g.state = genServing
	old := p.current
	p.current = g
	g.first, g.readyAt = old == nil, time.Now()
	// A new generation runs a new command, maybe the fix: given-up slots
	// and restart counts start afresh.
	clear(p.errored)
	clear(p.restartLog)
	took := time.Since(g.started)
	if !p.cfg.QuietReady {
		p.log.Printf("gen %d ready in %s (%s)", g.num, took.Round(time.Millisecond), workersN(len(g.workers)))
	}
	p.outcome(g, Event{Kind: GenReady, Gen: g.num, Command: g.cmd, Workers: len(g.workers), Took: took})
	if old != nil {
		p.drainGeneration(old)
	}
	p.readyOnce.Do(func() { close(p.readyC) })
	p.reconcile()
	if p.queued && !p.stopping {
		p.queued = false
		p.startGeneration()
	}
}

// reconcile makes the serving generation hold exactly p.size workers.
func (p *Pool) reconcile() {
	g := p.current
	if g == nil || p.stopping {
		return
	}
	for slot := range p.errored {
		if slot >= p.size {
			delete(p.errored, slot)
		}
	}
	for slot := 0; slot < p.size; slot++ {
		if _, given := p.errored[slot]; given || g.workers[slot] != nil {
			continue
		}
		w, err := p.startWorker(g, slot, false)
		if err != nil {
			p.log.Printf("gen %d worker %d: %v", g.num, slot, err)
			p.after(p.cfg.BackoffMin, respawnEvent{g.num, slot})
			continue
		}
		g.workers[slot] = w
	}
	for slot, w := range g.workers {
		if slot >= p.size && w.state != draining {
			p.drainWorker(w, "scaled down")
		}
	}
	for slot, w := range g.standby {
		if slot >= p.size {
			p.dropStandby(w)
		}
	}
}

func (p *Pool) drainGeneration(g *generation) {
	g.state = genDraining
	if g.empty() {
		p.released(g)
		return
	}
	for _, w := range g.workers {
		p.drainWorker(w, fmt.Sprintf("gen %d replaced it", p.current.num))
	}
	for _, w := range g.standby {
		p.dropStandby(w)
	}
}

// drainWorker sends the stop signal and arms the drain deadline.
func (p *Pool) drainWorker(w *worker, why string) {
	if w.state == draining {
		return
	}
	w.state = draining
	p.emit(Event{Kind: WorkerDraining, Gen: w.gen, Slot: w.slot, PID: w.pid, Err: why})
	w.stopTimers()
	if w.hung {
		// It would not drain: its connections are stuck with it.
		p.abort(w)
		return
	}
	w.signal(p.cfg.StopSignal)
	w.drain = p.after(p.cfg.DrainTimeout, drainEvent{w})
}

// failGeneration kills a generation that never served; the serving one,
// if any, keeps serving.
func (p *Pool) failGeneration(g *generation, why string) {
	if g.state != genStarting {
		return
	}
	g.state = genFailed
	if g.timeout != nil {
		g.timeout.Stop()
	}
	if p.pending == g {
		p.pending = nil
	}
	for _, w := range g.workers {
		w.signal(syscall.SIGKILL)
	}
	p.outcome(g, Event{Kind: GenFailed, Gen: g.num, Command: g.cmd, Err: why, Took: time.Since(g.started)})
	if p.current == nil && !p.stopping && !p.cfg.KeepGoing {
		p.fatal = fmt.Errorf("first generation failed: %s", why)
		p.log.Printf("gen %d failed: %s", g.num, why)
		p.stop(true)
	} else if p.current == nil && !p.stopping {
		p.log.Printf("gen %d failed: %s", g.num, why)
	} else if !p.stopping {
		p.log.Printf("reload failed: gen %d %s; gen %d keeps serving", g.num, why, p.current.num)
	}
	if len(g.workers) == 0 {
		p.released(g)
	}
	if p.queued && !p.stopping {
		p.queued = false
		p.startGeneration()
	}
}

func (p *Pool) exited(e exitEvent) {
	w := e.w
	w.stopTimers()
	g := p.gens[w.gen]
	standby := g.standby[w.slot] == w
	if standby {
		delete(g.standby, w.slot)
	}
	if g.workers[w.slot] == w {
		delete(g.workers, w.slot)
	}
	how := exitDescription(e.state, e.err)
	p.lastExit[w.slot] = how
	p.emit(Event{Kind: WorkerExited, Gen: w.gen, Slot: w.slot, PID: w.pid, Err: how, Took: time.Since(w.started)})
	switch {
	case standby:
		if !p.stopping && g.state == genServing && w.state != draining {
			p.log.Printf("%s, the replacement for worker %d, exited before it was ready: %s; the worker keeps serving%s", w, w.slot, how, w.tail.String())
			p.standbyFailed(g, w.slot)
		}
	case g.state == genStarting:
		p.failGeneration(g, fmt.Sprintf("worker %d (pid %d) exited before it was ready: %s%s", w.slot, w.pid, how, w.tail.String()))
	case g.state == genActivating:
		p.failActivation(g, fmt.Sprintf("worker %d (pid %d) exited as the traffic moved to its generation: %s%s", w.slot, w.pid, how, w.tail.String()))
	case w.state == draining || p.stopping || g.state == genFailed || g.state == genDraining:
		if w.state == draining {
			p.log.Printf("%s drained: %s", w, how)
		}
	case g.first && p.cfg.FirstGeneration <= 1 && !p.cfg.KeepGoing && time.Since(g.readyAt) < FirstGenerationGrace && !killedFromOutside(e.state):
		// Taken as ready, but it did not really start.
		why := fmt.Sprintf("worker %d (pid %d) exited %s after gen %d was taken as ready: %s%s", w.slot, w.pid,
			time.Since(g.readyAt).Round(time.Millisecond), g.num, how, w.tail.String())
		p.fatal = fmt.Errorf("first generation failed: %s", why)
		p.log.Printf("gen %d failed: %s", g.num, why)
		p.stop(true)
	default:
		// A serving worker died.
		if exhausted, recent := p.restarted(w.slot, time.Now()); exhausted {
			p.giveUp(g, w, how, recent)
			break
		}
		if time.Since(w.started) >= stableAfter {
			p.crashes[w.slot] = 0
		}
		p.crashes[w.slot]++
		n := p.crashes[w.slot]
		d := backoff(n, p.cfg.BackoffMin, p.cfg.BackoffMax)
		loop := ""
		if n >= crashLoopAt {
			loop = fmt.Sprintf(" (crash loop: %d crashes in a row)", n)
		}
		p.log.Printf("%s exited: %s; respawning in %s%s%s", w, how, d.Round(time.Millisecond), loop, w.tail.String())
		p.restarts[w.slot]++
		p.emit(Event{Kind: WorkerRespawn, Gen: g.num, Slot: w.slot, PID: w.pid, Took: d, Err: how})
		p.after(d, respawnEvent{g.num, w.slot})
	}
	if g.empty() && (g.state == genDraining || g.state == genFailed || p.stopping) {
		p.released(g)
	}
}

// released forgets a generation without workers.
func (p *Pool) released(g *generation) {
	if g == p.current && !p.stopping {
		return
	}
	delete(p.gens, g.num)
	if p.cfg.Sockets != nil {
		p.cfg.Sockets.Release(g.num)
	}
	p.emit(Event{Kind: GenDone, Gen: g.num, Command: g.cmd})
	if g.state == genDraining {
		p.log.Printf("gen %d drained", g.num)
	}
}

// stop drains (or with force, kills) every worker.
func (p *Pool) stop(force bool) {
	for _, c := range p.waiters {
		reply(c, Event{Kind: GenFailed, Err: "the master is stopping"})
	}
	p.waiters = nil
	if !p.stopping {
		p.stopping = true
		if !force {
			p.log.Printf("stopping: draining %s (--drain-timeout %s)", workersN(p.live()), p.cfg.DrainTimeout)
		}
	}
	for _, cancel := range p.activations {
		cancel()
	}
	for _, g := range p.gens {
		for _, w := range g.standby {
			p.dropStandby(w)
		}
		for _, w := range g.workers {
			switch {
			case force:
				w.signal(syscall.SIGKILL)
			case g.state == genStarting:
				p.failGeneration(g, "stopped before it was ready")
			default:
				p.drainWorker(w, "stopping")
			}
		}
		if g.state == genStarting {
			g.state = genFailed
		}
	}
	if force {
		p.log.Printf("stopping now: killed %s", workersN(p.live()))
	}
}

func (p *Pool) emit(e Event) {
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(e)
	}
}

func sortedSlots(m map[int]*worker) []int {
	s := make([]int, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	sort.Ints(s)
	return s
}

func workersN(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}

// reachable checks that user uid can traverse every directory down to dir,
// where its notify sockets will be.
func reachable(dir string, uid uint32) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("workers: notify socket directory: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm()&0o001 == 0 && !(ok && st.Uid == uid && fi.Mode().Perm()&0o100 != 0) {
			return fmt.Errorf("workers: the workers' user (uid %d) cannot enter %s (mode %s), on the way to their notify sockets in %s; point TMPDIR at a directory it can reach", uid, d, fi.Mode().Perm(), dir)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
