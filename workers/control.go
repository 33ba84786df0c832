package workers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"syscall"
	"time"
)

// What the loop allows a worker's message channel.
const (
	// outboxSize bounds the messages queued for one worker.
	outboxSize = 64
	// ipcWriteTimeout bounds one write to a worker that does not read.
	ipcWriteTimeout = time.Second
	// ipcRate and ipcBurst bound the messages a worker may send.
	ipcRate, ipcBurst = 1000, 1000
	// notifyRate and notifyBurst bound the notify datagrams the master
	// reads from one worker; a worker that sends faster waits in sendmsg
	// (or gets EAGAIN) once its socket's queue is full.
	notifyRate, notifyBurst = 1000, 1000
)

// Update changes what the next generations run; zero fields keep theirs.
type Update struct {
	Command *Command
	// Env replaces Config.Env when not nil.
	Env          []string
	Workers      int
	ReadyDelay   time.Duration
	ReadyTimeout time.Duration
	DrainTimeout time.Duration
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
		p.log.Printf("workers: %d from the next generation on (was %d)", u.Workers, p.size)
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
}

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

// outcome reports g's GenReady or GenFailed to OnEvent and to the reloads
// waiting for it.
func (p *Pool) outcome(g *generation, e Event) {
	for _, c := range g.waiters {
		reply(c, e)
	}
	g.waiters = nil
	if g.num > max(p.cfg.FirstGeneration, 1) {
		p.lastReload = &e
	}
	p.emit(e)
}

// outcomeOf is what a reload learns of a generation that failed before
// startGeneration returned.
func (p *Pool) outcomeOf(gen uint64) Event {
	if p.lastReload != nil && p.lastReload.Gen == gen {
		return *p.lastReload
	}
	return Event{Kind: GenFailed, Gen: gen, Err: "failed to start"}
}

// States of the whole pool, for Status.State.
const (
	// StateStarting: no generation has served yet.
	StateStarting = "starting"
	// StateServing: a generation serves with every slot.
	StateServing = "serving"
	// StateDegraded: a generation serves, but some of its slots were given
	// up (Config.MaxRestarts).
	StateDegraded = "degraded"
	// StateErrored: every slot of the serving generation was given up:
	// nothing serves until the next reload.
	StateErrored = "errored"
	// StateStopping: the pool drains for good.
	StateStopping = "stopping"
)

// ErroredSlot is a slot given up after too many restarts.
type ErroredSlot struct {
	Slot  int
	Why   string
	Since time.Time
}

// Status is a snapshot of the pool.
type Status struct {
	// State is one of the State constants.
	State   string
	Errored []ErroredSlot
	Started time.Time
	// Size is the number of workers the serving generation keeps.
	Size int
	// Current is the serving generation (0: none yet); Pending the one
	// starting, if any.
	Current, Pending uint64
	Stopping         bool
	Command          Command
	// LastReload is the last GenReady or GenFailed after the first
	// generation; nil before any reload.
	LastReload *Event
	Workers    []WorkerStatus
}

// WorkerStatus describes one worker process.
type WorkerStatus struct {
	Gen     uint64
	Slot    int
	PID     int
	State   string // starting, ready or draining
	Started time.Time
	// Restarts counts the respawns of the slot; LastExit says how the
	// slot's last worker ended ("" if none has).
	Restarts int
	LastExit string
	// Replacing: a standby that takes the slot from a worker being
	// recycled once it is ready.
	Replacing bool
	// IPC: the worker has a message channel.
	IPC bool
}

// Status returns a snapshot of the pool, taken by its loop.
func (p *Pool) Status(ctx context.Context) (Status, error) {
	c := make(chan Status, 1)
	if !p.send(request{kind: reqStatus, status: c}) {
		return Status{}, ErrStopped
	}
	select {
	case s := <-c:
		return s, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

func (p *Pool) snapshot() Status {
	s := Status{Started: p.started, Size: p.size, Stopping: p.stopping, Command: p.cmd}
	if p.current != nil {
		s.Current = p.current.num
	}
	if p.pending != nil {
		s.Pending = p.pending.num
	}
	if p.lastReload != nil {
		e := *p.lastReload
		s.LastReload = &e
	}
	add := func(w *worker, replacing bool) {
		state := w.state.String()
		if w.hung && w.state != draining {
			state = "hung"
		}
		s.Workers = append(s.Workers, WorkerStatus{
			Gen: w.gen, Slot: w.slot, PID: w.pid, State: state, Started: w.started,
			Restarts: p.restarts[w.slot], LastExit: p.lastExit[w.slot], Replacing: replacing, IPC: w.outbox != nil,
		})
	}
	for _, g := range p.gens {
		for _, w := range g.workers {
			add(w, false)
		}
		for _, w := range g.standby {
			add(w, true)
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(p.errored)) {
		e := p.errored[slot]
		s.Errored = append(s.Errored, ErroredSlot{Slot: slot, Why: e.why, Since: e.since})
	}
	switch {
	case p.stopping:
		s.State = StateStopping
	case p.current == nil:
		s.State = StateStarting
	case p.erroredNow():
		s.State = StateErrored
	case len(p.errored) > 0:
		s.State = StateDegraded
	default:
		s.State = StateServing
	}
	slices.SortFunc(s.Workers, func(a, b WorkerStatus) int {
		if a.Gen != b.Gen {
			return int(a.Gen) - int(b.Gen)
		}
		return a.Slot - b.Slot
	})
	return s
}

// becameReady marks a starting worker ready: a worker of a new generation
// may complete it, a standby takes its slot.
func (p *Pool) becameReady(w *worker) {
	if why := p.notHolding(w); why != "" {
		p.notServing(w, why)
		return
	}
	w.state = ready
	if w.delay != nil {
		w.delay.Stop()
	}
	p.becameServing(w)
	p.emit(Event{Kind: WorkerReady, Gen: w.gen, Slot: w.slot, PID: w.pid})
	g := p.gens[w.gen]
	if g != nil && g.standby[w.slot] == w {
		p.promote(g, w)
		return
	}
	p.checkReady(g)
}

type recycle struct {
	slot, pid int
	why       string
}

// Recycle replaces the serving generation's worker in slot, if its PID is
// still pid: a replacement starts in the same generation, and the worker
// drains once the replacement is ready (or keeps serving if it never is).
func (p *Pool) Recycle(slot, pid int, why string) {
	p.send(request{kind: reqRecycle, recycle: recycle{slot, pid, why}})
}

func (p *Pool) startRecycle(r recycle) {
	g := p.current
	if p.stopping || g == nil || g.state != genServing {
		return
	}
	old := g.workers[r.slot]
	if old == nil || old.pid != r.pid || old.state != ready || g.standby[r.slot] != nil {
		return
	}
	p.replace(g, old, r.why)
}

// replace starts a standby for old, a ready worker of g, the serving
// generation; old drains once the standby is ready. It returns false when
// the standby did not start.
func (p *Pool) replace(g *generation, old *worker, why string) bool {
	if g.standby[old.slot] != nil {
		return true // already being replaced
	}
	w, err := p.startWorker(g, old.slot, true)
	if err != nil {
		p.log.Printf("%s: %s, but its replacement did not start: %v", old, why, err)
		return false
	}
	g.standby[old.slot] = w
	p.log.Printf("%s: %s; replacing it with pid %d", old, why, w.pid)
	p.emit(Event{Kind: WorkerRecycle, Gen: g.num, Slot: old.slot, PID: old.pid, Err: why})
	w.timeout = p.after(p.cfg.ReadyTimeout, standbyTimeoutEvent{w})
	return true
}

type standbyTimeoutEvent struct{ w *worker }

// promote gives w, a ready standby, its slot; the worker it replaces drains.
func (p *Pool) promote(g *generation, w *worker) {
	delete(g.standby, w.slot)
	if w.timeout != nil {
		w.timeout.Stop()
	}
	w.timeout = nil
	old := g.workers[w.slot]
	g.workers[w.slot] = w
	if old != nil {
		p.drainWorker(old, fmt.Sprintf("replaced by pid %d", w.pid))
	}
}

// dropStandby kills a standby that is no longer wanted; it leaves the
// generation when its exit is reported.
func (p *Pool) dropStandby(w *worker) {
	if w.state == draining {
		return
	}
	w.state = draining
	w.stopTimers()
	w.signal(syscall.SIGKILL)
}

// Target names the workers a message goes to.
type Target struct {
	// Gen 0 is the serving generation.
	Gen uint64
	// Slot -1 is every worker of the generation.
	Slot int
}

type message struct {
	to    Target
	value json.RawMessage
	sent  chan<- sendResult
}

type sendResult struct {
	n   int
	err error
}

// Send queues value, one JSON value, for the workers of to and returns how
// many got it. It never waits for a worker: a worker whose queue is full
// (it does not read its channel) is an error.
func (p *Pool) Send(ctx context.Context, to Target, value json.RawMessage) (int, error) {
	if !json.Valid(value) {
		return 0, fmt.Errorf("workers: not a JSON value: %.80q", value)
	}
	c := make(chan sendResult, 1)
	if !p.send(request{kind: reqSend, message: &message{to: to, value: value, sent: c}}) {
		return 0, ErrStopped
	}
	select {
	case r := <-c:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *Pool) deliver(m *message) {
	n, err := p.deliverTo(m.to, m.value)
	m.sent <- sendResult{n, err}
}

func (p *Pool) deliverTo(to Target, value json.RawMessage) (int, error) {
	g := p.current
	if to.Gen != 0 {
		g = p.gens[to.Gen]
	}
	if g == nil && to.Gen == 0 {
		return 0, errors.New("no generation is serving yet")
	}
	if g == nil {
		return 0, fmt.Errorf("no generation %d", to.Gen)
	}
	var ws []*worker
	if to.Slot < 0 {
		for _, slot := range sortedSlots(g.workers) {
			ws = append(ws, g.workers[slot])
		}
	} else if w := g.workers[to.Slot]; w != nil {
		ws = append(ws, w)
	} else {
		return 0, fmt.Errorf("gen %d has no worker %d", g.num, to.Slot)
	}
	line := append(compact(value), '\n')
	n := 0
	var errs []error
	for _, w := range ws {
		if w.outbox == nil {
			errs = append(errs, fmt.Errorf("%s has no message channel (run with --ipc on, or node)", w))
			continue
		}
		select {
		case w.outbox <- line:
			n++
		default:
			errs = append(errs, fmt.Errorf("%s: %d messages queued that it has not read; message dropped", w, outboxSize))
		}
	}
	return n, errors.Join(errs...)
}

// compact makes a JSON value one line.
func compact(v json.RawMessage) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return v
	}
	return b.Bytes()
}

type (
	messageEvent struct {
		w   *worker
		msg ipcMessage
	}
	disconnectEvent struct{ w *worker }
)

// received handles a worker's message: an event, and a broadcast if it
// asked for one.
func (p *Pool) received(e messageEvent) {
	w := e.w
	if !p.alive(w) {
		return
	}
	p.emit(Event{Kind: WorkerMessage, Gen: w.gen, Slot: w.slot, PID: w.pid, Message: e.msg.value})
	if e.msg.broadcast {
		if _, err := p.deliverTo(Target{Gen: w.gen, Slot: -1}, e.msg.value); err != nil {
			p.log.Printf("%s: broadcast: %v", w, err)
		}
	}
}

func (p *Pool) standbyTimedOut(w *worker) {
	g := p.gens[w.gen]
	if g == nil || g.standby[w.slot] != w || w.state != starting {
		return
	}
	p.log.Printf("%s, the replacement for worker %d, not ready within --ready-timeout %s; the worker keeps serving%s", w, w.slot, p.cfg.ReadyTimeout, w.tail.String())
	p.dropStandby(w)
	p.standbyFailed(g, w.slot)
}

// bucket is a token bucket: rate tokens a second, at most burst.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate, burst int) *bucket {
	return &bucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst)}
}

// wait returns how long to wait from now until a token is there (0: one
// is there now).
func (b *bucket) wait(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

func (b *bucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// ReloadUpdate is Reload with u's changes.
func (p *Pool) ReloadUpdate(u Update) { p.send(request{kind: reqReload, update: &u}) }
