package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Rollout says how many slots a reload replaces at a time (--rollout). The
// zero value replaces the whole generation at once.
type Rollout struct {
	// Workers is K, a number of slots; Percent, when set instead, is P%
	// of the group's size, rounded up.
	Workers int
	Percent int
}

// ParseRollout parses "K" (a number of workers, 1 or more), "P%" (1 to
// 100 percent of the group) or "" and "all" (the whole generation).
func ParseRollout(s string) (Rollout, error) {
	switch s {
	case "", "all":
		return Rollout{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 {
			return Rollout{}, fmt.Errorf("rollout %q: want a percentage from 1%% to 100%% of the workers", s)
		}
		return Rollout{Percent: n}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return Rollout{}, fmt.Errorf("rollout %q: want a number of workers (1 or more), a percentage such as 25%%, or all", s)
	}
	return Rollout{Workers: n}, nil
}

func (r Rollout) String() string {
	switch {
	case r.Percent > 0:
		return strconv.Itoa(r.Percent) + "%"
	case r.Workers > 0:
		return strconv.Itoa(r.Workers)
	}
	return "all"
}

// Batch is K for a group of n workers: P% of n rounded up (at least 1),
// and n (the whole generation) when K is n or more, or unset.
func (r Rollout) Batch(n int) int {
	k := r.Workers
	if r.Percent > 0 {
		k = max((r.Percent*n+99)/100, 1)
	}
	if k <= 0 || k >= n {
		return n
	}
	return k
}

type rollPhase int

const (
	// rollIdle: between batches, waiting until a batch fits (at most N+K
	// workers live).
	rollIdle rollPhase = iota
	// rollStarting: the batch's workers start and get ready.
	rollStarting
	// rollMoving: the batch's slots move (Sockets.Move).
	rollMoving
)

// rollout is a reload that replaces k slots at a time. The new generation
// (new) starts with no worker and takes its slots batch by batch: its
// workers start, once ready the batch's slots move to them and the old
// generation's workers of those slots drain; the next batch starts once
// those exited, so that at most N+K workers live. Until the last batch the
// old generation is the serving one (p.current) and serves the slots not
// yet replaced; the last batch makes new the serving generation, as a
// whole turnover does.
//
// A batch that fails (a worker of new exits, or is not ready by
// --ready-timeout) rolls back: the slots already replaced go back, k at a
// time, to workers of the old generation (its command, started as
// standbys: they take their slot once ready), and the new generation's
// workers drain; the reload has failed once the old generation serves
// every slot again. One generation serves everything at the end, never a
// mix.
type rollout struct {
	old, new *generation
	k        int
	done     []int // slots on new, in the order they moved
	batch    []int // the batch in flight
	phase    rollPhase
	back     bool   // rolling back
	why      string // what failed
	failed   string // a failure seen while a batch moved, acted on after
	started  time.Time
}

func (r *rollout) progress() string {
	if r.back {
		return fmt.Sprintf("rolling back %d/%d", len(r.done), r.new.size)
	}
	return fmt.Sprintf("rollout %d/%d", len(r.done), r.new.size)
}

// owns reports whether slot is the rollout's: replaced, or in the batch.
func (r *rollout) owns(slot int) bool {
	return slices.Contains(r.done, slot) || slices.Contains(r.batch, slot)
}

// movedEvent reports the end of a batch's Sockets.Move.
type movedEvent struct {
	r   *rollout
	err error
}

func (e movedEvent) handle(p *Pool) { p.rollMoved(e.r, e.err) }

// moveRetry is how long a rollback waits before it tries again a Move back
// that failed (the sockets refuse while an upgrade holds them).
const moveRetry = time.Second

// moveRetryEvent tries again to move a rollback's batch back.
type moveRetryEvent struct{ r *rollout }

func (e moveRetryEvent) handle(p *Pool) {
	if p.roll == e.r && e.r.phase == rollMoving && !p.stopping {
		p.startMove(e.r)
	}
}

// retryEvent starts again the standby of slot that failed in a rollback.
type retryEvent struct {
	r    *rollout
	slot int
}

func (e retryEvent) handle(p *Pool) {
	r := p.roll
	if r != e.r || !r.back || r.phase != rollStarting || !slices.Contains(r.batch, e.slot) || r.old.standby[e.slot] != nil {
		return
	}
	p.startBackStandby(r, e.slot)
}

// rolloutBatch is K for a reload into g, 0 for a turnover of the whole
// generation: with --rollout set below the size, and an old generation
// that serves with as many slots.
func (p *Pool) rolloutBatch(g *generation) int {
	cur := p.current
	if cur == nil || cur.state != genServing || p.stopping {
		return 0
	}
	k := p.cfg.Rollout.Batch(g.size)
	if k >= g.size {
		return 0
	}
	if cur.size != g.size || p.size != cur.size {
		p.genf(slog.LevelInfo, g.num, "gen %d: the size changes (%d to %d workers): the whole generation is replaced at once, not --rollout %s", g.num, cur.size, g.size, p.cfg.Rollout)
		return 0
	}
	return k
}

// startRollout begins a rolling reload into g, which has no worker yet.
func (p *Pool) startRollout(g *generation, k int) {
	p.roll = &rollout{old: p.current, new: g, k: k, started: time.Now()}
	p.genf(slog.LevelInfo, g.num, "gen %d: rolling out %d at a time over %s of gen %d", g.num, k, workersN(g.size), p.current.num)
	p.emit(Event{Kind: RolloutBatch, Gen: g.num, Workers: g.size})
	p.rollStep()
}

// rollStep starts the next batch when none is in flight and it fits: at
// most N+K workers live (the batch before has drained). It is called after
// each batch and at each worker's exit.
func (p *Pool) rollStep() {
	r := p.roll
	if r == nil || r.phase != rollIdle || p.stopping {
		return
	}
	size := r.new.size
	if r.back {
		if len(r.done) == 0 {
			p.rollBackDone()
			return
		}
		// The last replaced first; a slot whose new worker is gone is
		// moved back before the others (it serves nobody).
		slices.SortStableFunc(r.done, func(a, b int) int {
			return boolInt(r.new.workers[a] == nil) - boolInt(r.new.workers[b] == nil)
		})
		batch := slices.Clone(r.done[len(r.done)-min(r.k, len(r.done)):])
		// A slot whose old worker still serves (its batch failed as it
		// moved) goes back to it; the others need the old command again.
		starts := 0
		for _, slot := range batch {
			if w := r.old.workers[slot]; w == nil || w.state == draining {
				starts++
			}
		}
		if p.live()+starts > size+r.k {
			return
		}
		r.batch = batch
		r.phase = rollStarting
		for _, slot := range r.batch {
			if w := r.old.workers[slot]; w == nil || w.state == draining {
				p.startBackStandby(r, slot)
			}
		}
		p.rollReady()
		return
	}
	n := min(r.k, size-len(r.done))
	if p.live()+n > size+r.k {
		return
	}
	for slot := 0; slot < size && len(r.batch) < n; slot++ {
		if !slices.Contains(r.done, slot) {
			r.batch = append(r.batch, slot)
		}
	}
	r.phase = rollStarting
	if err := p.reserveDescriptors(n); err != nil {
		p.rollFailed(err.Error())
		return
	}
	for _, slot := range r.batch {
		w, err := p.startWorker(r.new, slot, false)
		if err != nil {
			p.rollFailed(fmt.Sprintf("worker %d: %v", slot, err))
			return
		}
		r.new.workers[slot] = w
	}
	if r.new.timeout != nil {
		r.new.timeout.Stop()
	}
	r.new.timeout = p.after(p.cfg.ReadyTimeout, genTimeoutEvent{r.new})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// startBackStandby starts, in a rollback, a worker of the old generation
// (its command) for slot; it takes the slot once ready.
func (p *Pool) startBackStandby(r *rollout, slot int) {
	w, err := p.startWorker(r.old, slot, true)
	if err != nil {
		d := backoff(p.crashes[slot]+1, p.cfg.BackoffMin, p.cfg.BackoffMax)
		p.genf(slog.LevelError, r.old.num, "gen %d worker %d: rolling back: %v; retrying in %s", r.old.num, slot, err, d.Round(time.Millisecond))
		p.after(d, retryEvent{r, slot})
		return
	}
	r.old.standby[slot] = w
	w.timeout = p.after(p.cfg.ReadyTimeout, standbyTimeoutEvent{w})
}

// rollStandbyFailed: a standby of a rollback did not get ready; the old
// command is started again for its slot after a back-off (the slot stays
// on the new generation's worker meanwhile, as status shows).
func (p *Pool) rollStandbyFailed(g *generation, slot int) {
	r := p.roll
	if r == nil || !r.back || g != r.old || !slices.Contains(r.batch, slot) {
		return
	}
	p.crashes[slot]++
	d := backoff(p.crashes[slot], p.cfg.BackoffMin, p.cfg.BackoffMax)
	p.genf(slog.LevelError, g.num, "gen %d worker %d: rolling back, the old command did not get ready; retrying in %s", g.num, slot, d.Round(time.Millisecond))
	p.after(d, retryEvent{r, slot})
}

// rollReady moves the batch's slots once all its workers are ready.
func (p *Pool) rollReady() {
	r := p.roll
	if r == nil || r.phase != rollStarting {
		return
	}
	for _, slot := range r.batch {
		// Forward, the new generation's worker of the slot; back, the
		// old generation's, once a standby took the slot.
		w := r.new.workers[slot]
		if r.back {
			w = r.old.workers[slot]
			if r.old.standby[slot] != nil {
				return
			}
		}
		if w == nil || w.state != ready {
			return
		}
	}
	if !r.back && r.new.timeout != nil {
		r.new.timeout.Stop()
	}
	r.phase = rollMoving
	p.startMove(r)
}

// startMove moves the batch's slots in a goroutine, which reports with a
// movedEvent: to the new generation, or back to the old one.
func (p *Pool) startMove(r *rollout) {
	to := r.new
	if r.back {
		to = r.old
	}
	if p.cfg.Sockets == nil {
		p.rollMoved(r, nil)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.activations[r.new] = cancel
	slots := slices.Clone(r.batch)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := p.cfg.Sockets.Move(ctx, to.num, slots)
		p.post(movedEvent{r, err})
	}()
}

// rollMoved goes on once a batch's slots moved: forward, the old workers
// of the batch drain (or, after the last batch, the new generation serves);
// back, the new generation's workers of the batch drain.
func (p *Pool) rollMoved(r *rollout, err error) {
	if cancel := p.activations[r.new]; cancel != nil {
		cancel()
		delete(p.activations, r.new)
	}
	if p.roll != r || r.phase != rollMoving {
		return
	}
	if err != nil {
		var moved interface{ Moved() bool }
		switch {
		case errors.As(err, &moved) && moved.Moved():
			p.genf(slog.LevelWarn, r.new.num, "gen %d: move slots %v: %v; moving on", r.new.num, r.batch, err)
		case r.back:
			// The new generation's workers keep their slots until they
			// move back: try again.
			p.genf(slog.LevelError, r.new.num, "gen %d: rolling back: move slots %v back to gen %d: %v; retrying in %s", r.new.num, r.batch, r.old.num, err, moveRetry)
			p.after(moveRetry, moveRetryEvent{r})
			return
		case r.failed == "":
			r.failed = fmt.Sprintf("its slots %v could not move: %v", r.batch, err)
		}
	}
	batch := r.batch
	r.batch, r.phase = nil, rollIdle
	if r.back {
		r.done = slices.DeleteFunc(r.done, func(s int) bool { return slices.Contains(batch, s) })
		for _, slot := range batch {
			if w := r.new.workers[slot]; w != nil {
				p.drainWorker(w, fmt.Sprintf("rolled back: gen %d serves its slot again", r.old.num))
			}
		}
		p.genf(slog.LevelInfo, r.new.num, "gen %d: %s: slots %v back on gen %d", r.new.num, r.progress(), batch, r.old.num)
		p.emit(Event{Kind: RolloutBack, Gen: r.new.num, Workers: r.new.size, Replaced: len(r.done), Err: r.why})
		p.rollStep()
		return
	}
	// Moved, maybe partly: the slots are the new generation's either way,
	// and a rollback moves them back.
	r.done = append(r.done, batch...)
	if r.failed != "" {
		why := r.failed
		r.failed = ""
		p.rollFailed(why)
		return
	}
	p.genf(slog.LevelInfo, r.new.num, "gen %d: %s: slots %v moved from gen %d", r.new.num, r.progress(), batch, r.old.num)
	p.emit(Event{Kind: RolloutBatch, Gen: r.new.num, Workers: r.new.size, Replaced: len(r.done)})
	if len(r.done) == r.new.size {
		// The last batch: the new generation serves (its Move made it
		// the sockets' active one), and the old one drains what it has.
		p.roll = nil
		p.move(r.new, genActivating)
		p.activated(r.new, nil)
		return
	}
	for _, slot := range batch {
		if w := r.old.workers[slot]; w != nil {
			p.drainWorker(w, fmt.Sprintf("gen %d took its slot (%s)", r.new.num, r.progress()))
		}
	}
	p.rollStep()
}

// rollFailed stops the rollout and rolls back: the batch's workers, which
// never got traffic, are killed; the replaced slots go back to the old
// generation (rollStep). A failure while a batch moves waits for the move.
func (p *Pool) rollFailed(why string) {
	r := p.roll
	if r == nil || r.back {
		return
	}
	if r.phase == rollMoving {
		if r.failed == "" {
			r.failed = why
		}
		return
	}
	r.back, r.why = true, why
	if r.new.timeout != nil {
		r.new.timeout.Stop()
	}
	for _, slot := range r.batch {
		if w := r.new.workers[slot]; w != nil && w.state != draining {
			w.state = draining
			w.stopTimers()
			w.signal(syscall.SIGKILL)
		}
	}
	r.batch, r.phase = nil, rollIdle
	p.genf(slog.LevelError, r.new.num, "reload failed: gen %d %s; rolling back %d replaced slots to gen %d", r.new.num, why, len(r.done), r.old.num)
	p.emit(Event{Kind: RolloutBack, Gen: r.new.num, Workers: r.new.size, Replaced: len(r.done), Err: why})
	p.rollStep()
}

// rollBackDone ends a rollback: the old generation serves every slot, the
// new one has failed (its workers drain).
func (p *Pool) rollBackDone() {
	r := p.roll
	p.roll = nil
	g := r.new
	if g.timeout != nil {
		g.timeout.Stop()
	}
	p.move(g, genFailed)
	if p.pending == g {
		p.pending = nil
	}
	why := fmt.Sprintf("%s; rolled back: gen %d serves all %s again", r.why, r.old.num, workersN(g.size))
	p.outcome(g, Event{Kind: GenFailed, Gen: g.num, Command: g.cmd, Err: why, Took: time.Since(g.started)})
	p.genf(slog.LevelError, g.num, "reload failed: gen %d %s", g.num, why)
	if g.empty() {
		p.released(g)
	}
	if p.queued && !p.stopping {
		p.queued = false
		p.startGeneration()
	}
}

// rollExited handles the exit of a worker of a rollout's new generation: one
// the rollout stopped (killed, drained) or, otherwise, the batch fails.
func (p *Pool) rollExited(w *worker, how string) {
	if w.state == draining {
		p.logf(slog.LevelInfo, w, "%s drained: %s", w, how)
		return
	}
	p.rollFailed(fmt.Sprintf("worker %d (pid %d) exited: %s%s", w.slot, w.pid, how, w.tail.String()))
}

// stopRollout ends a rollout because the pool stops: the new generation
// has failed, and its workers drain with the others.
func (p *Pool) stopRollout() {
	r := p.roll
	if r == nil {
		return
	}
	p.roll = nil
	if r.new.timeout != nil {
		r.new.timeout.Stop()
	}
	p.move(r.new, genFailed)
	if p.pending == r.new {
		p.pending = nil
	}
	p.outcome(r.new, Event{Kind: GenFailed, Gen: r.new.num, Command: r.new.cmd, Err: "the master is stopping", Took: time.Since(r.new.started)})
}

// RolloutStatus is a rolling reload in progress.
type RolloutStatus struct {
	// Gen replaces From, Batch slots at a time; Replaced slots of Size
	// are on Gen.
	Gen, From       uint64
	Batch, Replaced int
	Size            int
	// Back: a batch failed (Why) and the replaced slots go back to From.
	Back bool
	Why  string
	// Slots are the replaced slots; Moving the batch in flight.
	Slots, Moving []int
}

// String is "rollout 3/8", or "rolling back 2/8".
func (s RolloutStatus) String() string {
	if s.Back {
		return fmt.Sprintf("rolling back %d/%d", s.Replaced, s.Size)
	}
	return fmt.Sprintf("rollout %d/%d", s.Replaced, s.Size)
}

func (p *Pool) rolloutStatus() *RolloutStatus {
	r := p.roll
	if r == nil {
		return nil
	}
	return &RolloutStatus{Gen: r.new.num, From: r.old.num, Batch: r.k, Replaced: len(r.done), Size: r.new.size,
		Back: r.back, Why: r.why, Slots: slices.Sorted(slices.Values(r.done)), Moving: slices.Clone(r.batch)}
}
