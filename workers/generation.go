package workers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"syscall"
	"time"
)

type genState int

const (
	genStarting genState = iota
	genActivating
	genServing
	genDraining
	genFailed
)

func (s genState) String() string {
	return [...]string{"starting", "activating", "serving", "draining", "failed"}[s]
}

// genMoves is a generation's life, every state change it may make:
//
//	starting   → activating (all its workers ready: the traffic moves)
//	starting   → failed     (a worker exited, --ready-timeout, a stop)
//	activating → serving    (the traffic moved)
//	activating → starting   (a worker exited while it moved: it fails next)
//	serving    → draining   (a newer generation serves, or the pool stops)
//	activating → draining   (the pool stopped while the traffic moved)
//
// draining and failed are final: the generation is forgotten once its last
// worker has exited.
var genMoves = map[genState][]genState{
	genStarting:   {genActivating, genFailed},
	genActivating: {genServing, genStarting, genDraining},
	genServing:    {genDraining},
}

// move is the one place a generation changes state. A move genMoves does
// not allow is a bug in the pool: the pool's tests fail on it (strict); a
// master logs it and goes on.
func (p *Pool) move(g *generation, s genState) {
	if !slices.Contains(genMoves[g.state], s) {
		msg := fmt.Sprintf("workers: gen %d moves from %v to %v, which the pool does not expect", g.num, g.state, s)
		if p.strict {
			panic(msg)
		}
		p.genf(slog.LevelError, g.num, "%s", msg)
	}
	g.state = s
}

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
	// replaced holds workers whose slot a standby took, until they exit:
	// they drain, and the drain deadline and a stop still reach them.
	replaced map[*worker]bool
	timeout  *time.Timer
	waiters  []chan<- Event // reloads waiting for this generation's outcome
	// told holds what was logged for it that is logged once per
	// generation (see tell).
	told map[string]bool
	// down holds the slots whose serving worker died and waits for its
	// respawn, by slot, for status.
	down map[int]downSlot
}

// downSlot is a slot of a serving generation between its worker's crash
// and the respawn.
type downSlot struct {
	pid       int
	exit      string
	at        time.Time
	respawnAt time.Time
	restarts  int // of the worker that died
	crashes   int // in a row, so far
}

// empty: no worker of g, standbys included, is left.
func (g *generation) empty() bool {
	return len(g.workers) == 0 && len(g.standby) == 0 && len(g.replaced) == 0
}

// startGeneration forks a new generation of p.size workers.
func (p *Pool) startGeneration() {
	p.gen++
	first := p.current == nil
	g := &generation{num: p.gen, size: p.size, cmd: p.cmd, env: p.env, started: time.Now(), workers: make(map[int]*worker), standby: make(map[int]*worker), replaced: make(map[*worker]bool), down: make(map[int]downSlot)}
	g.waiters, p.waiters = p.waiters, nil
	p.gens[g.num] = g
	p.pending = g
	if !first {
		p.genf(slog.LevelInfo, g.num, "gen %d: starting %s", g.num, workersN(g.size))
	}
	p.emit(Event{Kind: GenStarting, Gen: g.num, Command: g.cmd, Workers: g.size})
	if k := p.rolloutBatch(g); k > 0 {
		p.startRollout(g, k)
		return
	}
	if err := p.reserveDescriptors(g.size); err != nil {
		p.failGenerationErr(g, err.Error(), err)
		return
	}
	for slot := 0; slot < g.size; slot++ {
		w, err := p.startWorker(g, slot, false)
		if err != nil {
			p.failGenerationErr(g, err.Error(), err)
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
		files, err := p.cfg.Sockets.Files(g.num, slot)
		if err != nil {
			return nil, err
		}
		s.files, s.names = files, p.cfg.Sockets.Names()
	}
	w, err := p.spawnFn(s)
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

// checkReady starts the traffic's move to g once all its workers are ready.
func (p *Pool) checkReady(g *generation) {
	if r := p.roll; r != nil && g == r.new {
		p.rollReady()
		return
	}
	if g == nil || g.state != genStarting || len(g.workers) < g.size {
		return
	}
	for _, w := range g.workers {
		if w.state != ready {
			return
		}
	}
	p.move(g, genActivating)
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
	p.move(g, genStarting)
	p.failGeneration(g, why)
	if cur := p.current; cur != nil && cur.state == genServing && p.cfg.Sockets != nil && !p.stopping {
		p.activate(cur)
	}
}

// activated makes g the serving generation and drains the previous one.
func (p *Pool) activated(g *generation, err error) {
	if cancel := p.activations[g]; cancel != nil {
		cancel()
		delete(p.activations, g)
	}
	if p.pending == g {
		p.pending = nil
	}
	if g.state != genActivating {
		// Stopped or failed meanwhile, or the traffic moved back to it.
		return
	}
	if err != nil {
		p.genf(slog.LevelWarn, g.num, "gen %d: %v; moving on", g.num, err)
	}
	p.move(g, genServing)
	old := p.current
	p.current = g
	g.first, g.readyAt = old == nil, time.Now()
	// A new generation runs a new command, maybe the fix: given-up slots
	// and restart counts start afresh.
	clear(p.errored)
	clear(p.restartLog)
	// The caller logs the GenReady event: it may say more (the
	// development loop: the build's time, the files changed).
	took := time.Since(g.started)
	p.outcome(g, Event{Kind: GenReady, Gen: g.num, Command: g.cmd, Workers: len(g.workers), Took: took})
	if old != nil {
		p.drainGeneration(old)
	}
	p.readyOnce.Do(func() { close(p.readyC) })
	if p.cfg.Sockets != nil {
		// A worker taken as ready by --ready-delay may close its socket
		// only later, at its own pace: look once more.
		p.after(p.cfg.ReadyDelay, holdCheckEvent{g})
	}
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
		if p.roll != nil && p.roll.owns(slot) {
			continue
		}
		w, err := p.startWorker(g, slot, false)
		if err != nil {
			p.genf(slog.LevelError, g.num, "gen %d worker %d: %v", g.num, slot, err)
			p.after(p.cfg.BackoffMin, respawnEvent{g.num, slot})
			continue
		}
		g.workers[slot] = w
	}
	if len(g.workers) > p.size {
		// Stop sending the slots to go new connections before their
		// workers stop accepting.
		p.serveSlots(g)
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
	p.move(g, genDraining)
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
	p.emit(Event{Kind: WorkerDraining, Gen: w.gen, Slot: w.slot, PID: w.pid, Err: why, DrainsKeepAlive: w.drainsKeepAlive})
	w.stopTimers()
	if w.hung {
		// It would not drain: its connections are stuck with it.
		p.abort(w)
		return
	}
	var delay time.Duration
	if p.cfg.BeforeStop != nil {
		delay = min(max(p.cfg.BeforeStop(w.pid, w.drainsKeepAlive), 0), MaxStopDelay)
	}
	if delay > 0 {
		w.stopSig = p.after(delay, stopEvent{w})
	} else {
		w.signal(p.cfg.StopSignal)
	}
	w.drain = p.after(delay+p.cfg.DrainTimeout, drainEvent{w})
}

// failGeneration kills a generation that never served; the serving one,
// if any, keeps serving.
func (p *Pool) failGeneration(g *generation, why string) { p.failGenerationErr(g, why, nil) }

// failGenerationErr is failGeneration with the error that caused it, if
// one did (a worker that could not be started): a first generation's
// failure wraps it.
func (p *Pool) failGenerationErr(g *generation, why string, cause error) {
	if g.state != genStarting {
		return
	}
	if r := p.roll; r != nil && g == r.new && !p.stopping {
		// Only the batch failed: the rollout rolls back.
		p.rollFailed(why)
		return
	}
	p.move(g, genFailed)
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
		p.fatal = &FirstGenerationError{Gen: g.num, Reason: why, Err: cause}
		p.genf(slog.LevelError, g.num, "gen %d failed: %s", g.num, why)
		p.stop(true)
	} else if p.current == nil && !p.stopping {
		p.genf(slog.LevelError, g.num, "gen %d failed: %s", g.num, why)
	} else if !p.stopping {
		p.genf(slog.LevelError, g.num, "reload failed: gen %d %s; gen %d keeps serving", g.num, why, p.current.num)
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
	delete(g.replaced, w)
	how := exitDescription(e.status, e.err)
	p.emit(Event{Kind: WorkerExited, Gen: w.gen, Slot: w.slot, PID: w.pid, Err: how, Took: time.Since(w.started)})
	switch {
	case p.roll != nil && g == p.roll.new:
		p.rollExited(w, how)
	case standby:
		if !p.stopping && g.state == genServing && w.state != draining {
			p.logf(slog.LevelWarn, w, "%s, the replacement for worker %d, exited before it was ready: %s; the worker keeps serving%s", w, w.slot, how, w.tail.String())
			p.standbyFailed(g, w.slot)
		}
	case g.state == genStarting:
		p.failGeneration(g, fmt.Sprintf("worker %d (pid %d) exited before it was ready: %s%s", w.slot, w.pid, how, w.tail.String()))
	case g.state == genActivating && !p.stopping && w.state != draining:
		p.failActivation(g, fmt.Sprintf("worker %d (pid %d) exited as the traffic moved to its generation: %s%s", w.slot, w.pid, how, w.tail.String()))
	case w.state == draining || p.stopping || g.state == genFailed || g.state == genDraining:
		if w.state == draining {
			p.logf(slog.LevelInfo, w, "%s drained: %s", w, how)
		}
	case g.first && p.cfg.FirstGeneration <= 1 && !p.cfg.KeepGoing && time.Since(g.readyAt) < FirstGenerationGrace && !killedFromOutside(e.status):
		// Taken as ready, but it did not really start.
		why := fmt.Sprintf("worker %d (pid %d) exited %s after gen %d was taken as ready: %s%s", w.slot, w.pid,
			time.Since(g.readyAt).Round(time.Millisecond), g.num, how, w.tail.String())
		p.fatal = &FirstGenerationError{Gen: g.num, Reason: why}
		p.genf(slog.LevelError, g.num, "gen %d failed: %s", g.num, why)
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
		p.logf(slog.LevelError, w, "%s exited: %s; respawning in %s%s%s", w, how, d.Round(time.Millisecond), loop, w.tail.String())
		now := time.Now()
		g.down[w.slot] = downSlot{pid: w.pid, exit: how, at: now, respawnAt: now.Add(d), restarts: w.restarts, crashes: n}
		p.emit(Event{Kind: WorkerRespawn, Gen: g.num, Slot: w.slot, PID: w.pid, Took: d, Err: how})
		p.after(d, respawnEvent{g.num, w.slot})
	}
	if g.state == genServing && !standby {
		// Its slot's socket gets no connections until a worker takes it
		// again (Files, at the respawn).
		p.serveSlots(g)
	}
	if g.empty() && (g.state == genDraining || g.state == genFailed || p.stopping) && p.gens[g.num] == g {
		p.released(g)
	}
	// A batch may fit now (at most N+K workers live).
	p.rollStep()
}

// serveSlots tells the sockets which slots of g, the serving generation,
// have a worker to accept from their socket (where each slot has a socket
// of its own): not a slot whose worker is down (crashed, given up) or
// beyond the size (scaling down). The connections in the queue of a slot
// left out are relayed to the others.
func (p *Pool) serveSlots(g *generation) {
	if p.cfg.Sockets == nil || g != p.current || g.state != genServing || p.stopping {
		return
	}
	var slots []int
	for slot, w := range g.workers {
		if slot < p.size && w.state != draining {
			slots = append(slots, slot)
		}
	}
	if err := p.cfg.Sockets.Serve(g.num, slots); err != nil {
		p.genf(slog.LevelError, g.num, "gen %d: steer to slots %v: %v", g.num, slots, err)
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
		p.genf(slog.LevelInfo, g.num, "gen %d drained", g.num)
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
		if p.roll != nil {
			p.rollReady() // a rollback's worker of the old command
		}
		return
	}
	p.checkReady(g)
}
