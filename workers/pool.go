package workers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/protocol"
	"github.com/hotcluster/hotcluster/internal/safedir"
)

// selfExe is how a worker's shim re-executes hotcluster's own binary. It
// stays valid when the file on disk was replaced or removed.
const selfExe = "/proc/self/exe"

// Pool supervises generations of workers. Create it with New, run it with
// Run; its other methods are safe to call from any goroutine, before, during
// or after Run.
type Pool struct {
	cfg     Config
	baseEnv []string
	log     *slog.Logger

	reqs   chan request
	events chan loopEvent
	forker *forker // while Run runs
	// spawnFn starts a worker: spawn, but for the pool's own tests, which
	// also set strict (see move).
	spawnFn   func(spawnSpec) (*worker, error)
	strict    bool
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
	queued    bool     // a reload was asked for during a turnover
	roll      *rollout // the rolling reload in progress (--rollout), if any
	stopping  bool
	speaks    bool // a worker of this master sent READY=1
	fatal     error
	crashes   map[int]int // consecutive crashes per slot
	// activations are the generations the traffic is moving to, with what
	// cancels their Sockets.Activate.
	activations map[*generation]context.CancelFunc
	cmd         Command  // of the next generation
	env         []string // of the next generation (Config.Env, or an Update's)
	// restartLog holds the times of each slot's recent respawns, for
	// MaxRestarts; errored the slots given up, with why.
	restartLog map[int][]time.Time
	errored    map[int]erroredSlot
	// unreadable: /proc did not tell what a worker holds; said once.
	unreadable bool
	// intercepting: workers get the bind and listen filter (see
	// startIntercepting); what it tells about all workers is said once.
	intercepting, toldNoNewPrivs, toldInterceptFailed bool
	waiters                                           []chan<- Event // reloads queued behind a turnover, for their outcome
	lastReload                                        *Event         // the last GenReady or GenFailed after the first
	started                                           time.Time
}

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
	scale   scaleRequest
}

// scaleRequest sets the size (relative: changes it by n).
type scaleRequest struct {
	n        int
	relative bool
	result   chan<- scaleResult // nil for a signal's request
}

type scaleResult struct {
	size int
	err  error
}

type requestKind int

const (
	reqReload requestKind = iota
	reqScale
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

// Reload starts a new generation with u's changes (from it on; zero fields
// keep theirs); the old one drains once it is ready. It does not wait: see
// ReloadWait. Reloads asked for during a turnover coalesce into one more
// turnover, and of their commands the last wins. On a pool that started
// without a command, the first Update with one starts the first
// generation.
func (p *Pool) Reload(u Update) { p.send(request{kind: reqReload, update: &u}) }

// Scale adds (delta > 0) or removes workers, one slot at a time.
func (p *Pool) Scale(delta int) {
	p.send(request{kind: reqScale, scale: scaleRequest{n: delta, relative: true}})
}

// ScaleTo sets the group's size to n, or with relative changes it by n,
// and returns the new size; a size below 1 or above the most a group may
// have is refused with an error saying so. The arithmetic is the loop's:
// concurrent calls each see the size the one before left.
func (p *Pool) ScaleTo(ctx context.Context, n int, relative bool) (int, error) {
	c := make(chan scaleResult, 1)
	if !p.send(request{kind: reqScale, scale: scaleRequest{n: n, relative: relative, result: c}}) {
		return 0, ErrStopped
	}
	select {
	case r := <-c:
		return r.size, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Stop drains every worker; Run then returns.
func (p *Pool) Stop() { p.send(request{kind: reqStop}) }

// ForceStop kills every worker at once; Run then returns.
func (p *Pool) ForceStop() { p.send(request{kind: reqForceStop}) }

// Events sent to the loop by the workers' goroutines and timers.
type (
	exitEvent struct {
		w      *worker
		err    error
		status *syscall.WaitStatus // nil when it could not be had
	}
	notifyEvent struct {
		w   *worker
		msg string
	}
	delayEvent      struct{ w *worker }
	drainEvent      struct{ w *worker }
	stopEvent       struct{ w *worker }
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

// post delivers e to the loop; it gives up once the loop has ended. Every
// event goes through it.
func (p *Pool) post(e loopEvent) {
	select {
	case p.events <- e:
	case <-p.done:
	}
}

func (p *Pool) after(d time.Duration, e loopEvent) *time.Timer {
	return time.AfterFunc(d, func() { p.post(e) })
}

// Run starts the first generation and supervises until Stop, ForceStop or
// the end of ctx (a graceful stop), and returns once every worker has
// exited. It returns an error when the first generation could not start.
func (p *Pool) Run(ctx context.Context) error {
	defer close(p.done)
	// Last: every worker has been reaped by then (p.wg), and the forker's
	// thread may end.
	defer p.forker.stop()
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

	p.startIntercepting()
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
			e.handle(p)
		}
	}
	p.wg.Wait()
	return p.fatal
}

func (p *Pool) live() int {
	n := 0
	for _, g := range p.gens {
		n += len(g.workers) + len(g.standby) + len(g.replaced)
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
	case reqScale:
		size, err := p.rescale(r.scale)
		if r.scale.result != nil {
			r.scale.result <- scaleResult{size, err}
		} else if err != nil {
			p.logf(slog.LevelWarn, nil, "%v", err)
		}
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

// loopEvent is what the workers' goroutines and the timers tell the loop;
// each kind says how the loop handles it, so the compiler knows the set.
// They are sent with post, never bare.
type loopEvent interface{ handle(p *Pool) }

func (e exitEvent) handle(p *Pool)           { p.exited(e) }
func (e notifyEvent) handle(p *Pool)         { p.notified(e.w, e.msg) }
func (e activatedEvent) handle(p *Pool)      { p.activated(e.g, e.err) }
func (e messageEvent) handle(p *Pool)        { p.received(e) }
func (e standbyTimeoutEvent) handle(p *Pool) { p.standbyTimedOut(e.w) }
func (e watchdogEvent) handle(p *Pool)       { p.watchdogFired(e.w) }

func (e delayEvent) handle(p *Pool) {
	w := e.w
	if w.state != starting || w.spoke && p.cfg.Ready != ReadyDelay {
		return
	}
	if p.cfg.Ready == ReadyAuto && p.speaks {
		return
	}
	p.becameReady(w)
}

// MaxStopDelay bounds the delay Config.BeforeStop may ask for.
const MaxStopDelay = 50 * time.Millisecond

func (e stopEvent) handle(p *Pool) {
	if p.alive(e.w) {
		e.w.signal(p.cfg.StopSignal)
	}
}

func (e drainEvent) handle(p *Pool) {
	if p.alive(e.w) {
		p.logf(slog.LevelWarn, e.w, "%s still running %s after the stop signal (--drain-timeout); killing it", e.w, p.cfg.DrainTimeout)
		e.w.signal(syscall.SIGKILL)
	}
}

func (e abortEvent) handle(p *Pool) {
	if p.alive(e.w) {
		p.logf(slog.LevelWarn, e.w, "%s still running %s after SIGABRT; killing it", e.w, hungKillAfter)
		e.w.signal(syscall.SIGKILL)
	}
}

func (e genTimeoutEvent) handle(p *Pool) {
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
}

func (e respawnEvent) handle(p *Pool) {
	g := p.gens[e.gen]
	if p.stopping || g == nil || g != p.current || e.slot >= p.size || g.workers[e.slot] != nil {
		return
	}
	if _, given := p.errored[e.slot]; given {
		return
	}
	if p.roll != nil && p.roll.owns(e.slot) {
		// The rollout has started the slot's new worker, or will
		// start its old command again when it rolls back.
		return
	}
	w, err := p.startWorker(g, e.slot, false)
	if err != nil {
		p.crashes[e.slot]++
		d := backoff(p.crashes[e.slot], p.cfg.BackoffMin, p.cfg.BackoffMax)
		p.genf(slog.LevelError, g.num, "gen %d worker %d: %v; retrying in %s", g.num, e.slot, err, d.Round(time.Millisecond))
		if down, ok := g.down[e.slot]; ok {
			down.respawnAt, down.crashes = time.Now().Add(d), p.crashes[e.slot]
			g.down[e.slot] = down
		}
		p.after(d, respawnEvent{g.num, e.slot})
		return
	}
	if down, ok := g.down[e.slot]; ok {
		w.restarts, w.prevExit, w.prevExitAt = down.restarts+1, down.exit, down.at
		delete(g.down, e.slot)
	}
	g.workers[e.slot] = w
}

func (e disconnectEvent) handle(p *Pool) {
	if p.alive(e.w) {
		p.emit(Event{Kind: WorkerDisconnect, Gen: e.w.gen, Slot: e.w.slot, PID: e.w.pid})
	}
}

func (p *Pool) alive(w *worker) bool {
	g := p.gens[w.gen]
	return g != nil && (g.workers[w.slot] == w || g.standby[w.slot] == w || g.replaced[w])
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
	case notifyDrains:
		w.drainsKeepAlive = true
	case notifyWatchdog:
		w.pinged = time.Now()
	case notifyWatchdogTrigger:
		if p.cfg.Watchdog > 0 && w.state == ready && !w.hung && p.alive(w) {
			p.hangs(w, "sent WATCHDOG=trigger")
		}
	}
}

// stop drains (or with force, kills) every worker.
func (p *Pool) stop(force bool) {
	p.stopRollout()
	for _, c := range p.waiters {
		reply(c, Event{Kind: GenFailed, Err: "the master is stopping"})
	}
	p.waiters = nil
	if !p.stopping {
		p.stopping = true
		if !force {
			p.logf(slog.LevelInfo, nil, "stopping: draining %s (--drain-timeout %s)", workersN(p.live()), p.cfg.DrainTimeout)
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
		for w := range g.replaced {
			if force {
				w.signal(syscall.SIGKILL)
			}
		}
		if g.state == genStarting {
			p.move(g, genFailed)
		}
	}
	if force {
		p.logf(slog.LevelInfo, nil, "stopping now: killed %s", workersN(p.live()))
	}
}

// rescale applies a scale request and returns the size.
func (p *Pool) rescale(r scaleRequest) (int, error) {
	if p.stopping {
		return p.size, errors.New("the master is stopping")
	}
	to := r.n
	if r.relative {
		to = p.size + r.n
	}
	asked := strconv.Itoa(r.n)
	if r.relative && r.n > 0 {
		asked = "+" + asked
	}
	switch {
	case to < 1 && r.result == nil: // TTOU
		return p.size, errors.New("scale down ignored: already at 1 worker")
	case to > protocol.MaxWorkers && r.result == nil: // TTIN
		return p.size, fmt.Errorf("scale up ignored: already at %d workers, the most a group may have", p.size)
	case to < 1:
		return p.size, fmt.Errorf("scale %s: the group has %d workers; it keeps at least 1", asked, p.size)
	case to > protocol.MaxWorkers:
		return p.size, fmt.Errorf("scale %s: the group has %d workers; it keeps at most %d", asked, p.size, protocol.MaxWorkers)
	case to == p.size:
		return p.size, nil
	case p.roll != nil:
		return p.size, fmt.Errorf("scale %s: a rolling reload is in progress (%s); scale once it has ended", asked, p.roll.progress())
	}
	dir := "up"
	if to < p.size {
		dir = "down"
	} else {
		more := to - p.size
		if p.pending != nil {
			more *= 2 // the generation starting grows too
		}
		if err := p.reserveDescriptors(more); err != nil {
			return p.size, fmt.Errorf("scale %s: %w", asked, err)
		}
	}
	p.size = to
	p.logf(slog.LevelInfo, nil, "scale %s to %s", dir, workersN(p.size))
	p.emit(Event{Kind: Scaled, Gen: p.gen, Workers: p.size})
	p.reconcile()
	return p.size, nil
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

// FirstGenerationError is what Run returns when the first generation could
// not start: why (a worker's exit status and last lines, a timeout), and
// the error behind it when there is one (fork/exec failed: errors.Is then
// finds fs.ErrPermission, fs.ErrNotExist…).
type FirstGenerationError struct {
	Gen    uint64
	Reason string
	Err    error
}

func (e *FirstGenerationError) Error() string { return "first generation failed: " + e.Reason }
func (e *FirstGenerationError) Unwrap() error { return e.Err }

// ErrStopped is returned by the methods that wait for the loop once Run
// has returned.
var ErrStopped = errors.New("workers: the pool has stopped")

// ReloadWait is Reload (with u's changes, if u is not nil) that returns the
// outcome of the generation that carries it: a GenReady or GenFailed event.
// A reload asked for during a turnover is carried by the next generation.
func (p *Pool) ReloadWait(ctx context.Context, u *Update) (Event, error) {
	outcome := make(chan Event, 1)
	if !p.send(request{kind: reqReload, update: u, outcome: outcome}) {
		return Event{}, ErrStopped
	}
	select {
	case e := <-outcome:
		return e, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	case <-p.done:
		// A generation stopped with the pool reports before Run returns.
		select {
		case e := <-outcome:
			return e, nil
		default:
			return Event{}, ErrStopped
		}
	}
}

func reply(c chan<- Event, e Event) {
	if c != nil {
		c <- e // buffered, one per request
	}
}
