package workers

import (
	"context"
	"maps"
	"slices"
	"time"
)

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
	// Gen, PID, Exit and Restarts describe the worker whose exit made the
	// slot be given up: its generation and PID (gone), how it ended, and
	// the respawns of the slot before it.
	Gen      uint64
	PID      int
	Exit     string
	Restarts int
}

// RestartingSlot is a slot of the serving generation whose worker died and
// is respawned at RespawnAt (after the back-off).
type RestartingSlot struct {
	Gen  uint64
	Slot int
	// PID, Exit and ExitedAt are the worker that died (its PID is gone).
	PID       int
	Exit      string
	ExitedAt  time.Time
	RespawnAt time.Time
	// Restarts counts the respawns of the slot before the worker that
	// died; Crashes its crashes in a row (CrashLoop once 5 or more).
	Restarts  int
	Crashes   int
	CrashLoop bool
}

// Status is a snapshot of the pool.
type Status struct {
	// State is one of the State constants.
	State   string
	Errored []ErroredSlot
	// Restarting lists the slots waiting for their respawn.
	Restarting []RestartingSlot
	Started    time.Time
	// Size is the number of workers the serving generation keeps.
	Size int
	// Current is the serving generation (0: none yet); Pending the one
	// starting, if any.
	Current, Pending uint64
	Stopping         bool
	// Command is what the serving generation runs (before the first
	// serves: what it will run). NextCommand, when it differs, is what
	// the next generation runs: the pending one's, or after a failed
	// reload the command that failed, which the next reload tries again
	// unless it brings another.
	Command     Command
	NextCommand *Command
	// LastReload is the last GenReady or GenFailed after the first
	// generation; nil before any reload.
	LastReload *Event
	// Rollout is the rolling reload in progress (--rollout), nil when none.
	Rollout *RolloutStatus
	Workers []WorkerStatus
}

// WorkerStatus describes one worker process.
type WorkerStatus struct {
	Gen     uint64
	Slot    int
	PID     int
	State   string // starting, ready, draining or hung
	Started time.Time
	// Restarts counts the respawns of the slot in this worker's
	// generation before this worker (a new generation starts at 0);
	// PrevExit says how the worker it replaced ended, and when ("" for a
	// worker that replaced none).
	Restarts   int
	PrevExit   string
	PrevExitAt time.Time
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
		s.Command = p.current.cmd
	}
	next := p.cmd
	if p.pending != nil {
		s.Pending = p.pending.num
		next = p.pending.cmd
	}
	if !sameCommand(next, s.Command) {
		s.NextCommand = &next
	}
	if p.lastReload != nil {
		e := *p.lastReload
		s.LastReload = &e
	}
	s.Rollout = p.rolloutStatus()
	add := func(w *worker, replacing bool) {
		state := w.state.String()
		if w.hung && w.state != draining {
			state = "hung"
		}
		s.Workers = append(s.Workers, WorkerStatus{
			Gen: w.gen, Slot: w.slot, PID: w.pid, State: state, Started: w.started,
			Restarts: w.restarts, PrevExit: w.prevExit, PrevExitAt: w.prevExitAt, Replacing: replacing, IPC: w.outbox != nil,
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
	if g := p.current; g != nil && !p.stopping {
		for _, slot := range slices.Sorted(maps.Keys(g.down)) {
			d := g.down[slot]
			if slot >= p.size || g.workers[slot] != nil {
				continue
			}
			s.Restarting = append(s.Restarting, RestartingSlot{Gen: g.num, Slot: slot, PID: d.pid, Exit: d.exit, ExitedAt: d.at,
				RespawnAt: d.respawnAt, Restarts: d.restarts, Crashes: d.crashes, CrashLoop: d.crashes >= crashLoopAt})
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(p.errored)) {
		e := p.errored[slot]
		s.Errored = append(s.Errored, ErroredSlot{Slot: slot, Why: e.why, Since: e.since, Gen: e.gen, PID: e.pid, Exit: e.exit, Restarts: e.restarts})
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

func sameCommand(a, b Command) bool {
	return a.Path == b.Path && slices.Equal(a.Args, b.Args)
}
