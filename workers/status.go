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
