package handoff

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrNoSlots is returned by Move for a listener without a socket per
// worker slot (a unix socket, classic BPF, a systemd socket that could not
// grow): its traffic cannot move one slot at a time.
var ErrNoSlots = errors.New("handoff: the listener has no socket per worker slot")

// Move points the new connections of slots at generation gen's sockets of
// those slots, and leaves every other slot where it is: a rolling reload
// (the worker group's --rollout) moves a batch of slots at a time from the
// serving generation to the next one, or back. gen must hold the slots'
// sockets (Files was called for them). Like Activate it then waits, bounded
// by ctx and Config.QuietTimeout, until the sockets that had those slots
// have nothing left their workers must serve, and returns a *QuietError
// when that ran out (the traffic has moved all the same).
//
// The slot table keeps its order (the slots in order, each with the socket
// of the generation serving it), so moving a slot changes which socket that
// slot's share of the flow hash reaches and nothing else. Once every slot
// is on gen, gen is the active generation, as after Activate(gen): moving
// forward the last batch completes the turnover, moving back the last one
// undoes it.
func (s *Sockets) Move(ctx context.Context, gen uint64, slots []int) error {
	s.checkForeign()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.frozen {
		// An upgraded master may be steering the same groups.
		s.mu.Unlock()
		return fmt.Errorf("handoff: move slots %v to generation %d: an upgrade holds the sockets", slots, gen)
	}
	k, ok := s.holders[gen]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("handoff: move slots %v to generation %d: it holds no sockets", slots, gen)
	}
	for _, l := range s.ls {
		if !l.perSlot() {
			s.mu.Unlock()
			return fmt.Errorf("listen %s: move slots %v: %w", l.spec, slots, ErrNoSlots)
		}
	}
	activeGen, ok := s.activeGenLocked()
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("handoff: move slots %v to generation %d: no generation holds the active sockets", slots, gen)
	}
	// from: the index each slot's connections went to until now.
	from := make(map[int]int)
	for _, slot := range slots {
		slot = sockSlot(slot)
		from[slot] = s.active
		if g, moved := s.moved[slot]; moved {
			from[slot] = s.holders[g]
		}
		if gen == activeGen {
			delete(s.moved, slot)
		} else {
			s.moved[slot] = gen
		}
	}
	if gen != activeGen && s.allMovedLocked(gen, activeGen) {
		// Every slot is gen's now: it is the active generation.
		clear(s.moved)
		s.active = k
		activeGen = gen
	}
	if err := s.steerLocked(s.active, activeGen); err != nil {
		s.mu.Unlock()
		return err
	}
	var quiet []oldSocks
	for _, l := range s.ls {
		q := oldSocks{l: l}
		for slot, old := range from {
			if old != k {
				if so := l.slotSock(old, slot); so != nil {
					q.socks = append(q.socks, so)
				}
			}
		}
		if len(q.socks) > 0 {
			quiet = append(quiet, q)
		}
	}
	s.mu.Unlock()
	return s.quietAfter(ctx, quiet)
}

// oldSocks are sockets of a listener that the selector no longer points
// to, whose connections their workers must still serve.
type oldSocks struct {
	l     *listener
	socks []*sock
}

// quietAfter waits for the sockets just steered away from to be quiet (see
// Activate), resets what is left on idle ones, and waits Config.Grace.
func (s *Sockets) quietAfter(ctx context.Context, quiet []oldSocks) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QuietTimeout)
	defer cancel()
	var qerr error
	for _, q := range quiet {
		if err := q.l.quiesce(ctx, q.socks); err != nil && qerr == nil {
			qerr = &QuietError{Listener: q.l.spec, Err: err}
		}
	}
	s.mu.Lock()
	s.resetIdleLocked()
	s.mu.Unlock()
	if qerr != nil {
		return qerr
	}
	t := time.NewTimer(s.cfg.Grace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// activeGenLocked is the generation holding the active index.
func (s *Sockets) activeGenLocked() (uint64, bool) {
	for gen, k := range s.holders {
		if k == s.active {
			return gen, true
		}
	}
	return 0, false
}

// allMovedLocked reports whether every slot the active generation's table
// has is moved to gen.
func (s *Sockets) allMovedLocked(gen, activeGen uint64) bool {
	for _, slot := range s.tableSlotsLocked(activeGen) {
		if s.moved[slot] != gen {
			return false
		}
	}
	return true
}

// tableSlotsLocked is the slots of the slot table, in order: those the
// active generation serves and those moved to another generation that
// serves them.
func (s *Sockets) tableSlotsLocked(activeGen uint64) []int {
	slots := slices.Clone(s.served[activeGen])
	for slot, g := range s.moved {
		if slices.Contains(s.served[g], slot) && !slices.Contains(slots, slot) {
			slots = append(slots, slot)
		}
	}
	slices.Sort(slots)
	return slots
}

// tableLocked is the slot table while slots are moved: for each slot in
// order, {index, slot} of the socket that gets its connections.
func (s *Sockets) tableLocked(k int, activeGen uint64) [][2]int {
	var refs [][2]int
	for _, slot := range s.tableSlotsLocked(activeGen) {
		ref := [2]int{k, slot}
		if g, moved := s.moved[slot]; moved {
			if mk, held := s.holders[g]; held {
				ref[0] = mk
			}
		}
		refs = append(refs, ref)
	}
	return refs
}
