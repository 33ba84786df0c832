package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
)

// follower reads a master's event stream (the control socket's events
// request) into a list the test waits on. Its goroutine is the Master's:
// stopped in cleanup.
type follower struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	hello  control.Event // the stream's first line: serving generation and size
	events []control.Event
	err    error         // why the stream ended, once it did
	cond   chan struct{} // closed and replaced on each new event
}

// Follow subscribes to the master's events through its control socket
// (socket: its path, as the master logs it) and returns once the stream is
// on: every event from then on is kept. Safe to call again: the first
// stream stays.
func (m *Master) Follow(socket string) {
	m.T.Helper()
	if m.events != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, done: make(chan struct{}), cond: make(chan struct{})}
	connected := make(chan struct{})
	go func() {
		defer close(f.done)
		first := true
		err := control.Events(ctx, socket, func(b json.RawMessage) error {
			var e control.Event
			if err := json.Unmarshal(b, &e); err != nil {
				return fmt.Errorf("event %s: %w", b, err)
			}
			f.mu.Lock()
			if first {
				f.hello = e
			} else {
				f.events = append(f.events, e)
			}
			close(f.cond)
			f.cond = make(chan struct{})
			f.mu.Unlock()
			if first {
				first = false
				close(connected)
			}
			return nil
		})
		f.mu.Lock()
		f.err = err
		close(f.cond)
		f.cond = make(chan struct{})
		f.mu.Unlock()
		if first {
			close(connected)
		}
	}()
	select {
	case <-connected:
	case <-time.After(m.opt.Timeout):
		cancel()
		m.T.Fatalf("no event stream from %s within %s", socket, m.opt.Timeout)
	}
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		m.T.Fatalf("events from %s: %v", socket, err)
	}
	m.events = f
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
}

// Hello returns the first line of the event stream: the generation that
// served and the group's size when Follow subscribed.
func (m *Master) Hello() control.Event {
	m.T.Helper()
	if m.events == nil {
		m.T.Fatal("testkit: Hello before Follow")
	}
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	return m.events.hello
}

// WaitEvent waits for an event matching match at index from or later of
// the events seen since Follow, and returns it and the index after it.
func (m *Master) WaitEvent(from int, what string, match func(control.Event) bool) (control.Event, int) {
	m.T.Helper()
	if m.events == nil {
		m.T.Fatal("testkit: WaitEvent before Follow")
	}
	f := m.events
	deadline := time.NewTimer(m.opt.Timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		for ; from < len(f.events); from++ {
			if e := f.events[from]; match(e) {
				f.mu.Unlock()
				return e, from + 1
			}
		}
		cond, err := f.cond, f.err
		f.mu.Unlock()
		if err != nil || m.Exited() {
			m.T.Fatalf("the event stream ended (%v; master: %v) before %s", err, m.Err, what)
		}
		select {
		case <-cond:
		case <-deadline.C:
			m.T.Fatalf("no event %s within %s", what, m.opt.Timeout)
		}
	}
}

// Events returns the events seen since Follow.
func (m *Master) Events() []control.Event {
	if m.events == nil {
		return nil
	}
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	return append([]control.Event(nil), m.events.events...)
}

// Is returns a match for WaitEvent: the event named name of generation gen
// (0: any).
func Is(name string, gen uint64) func(control.Event) bool {
	return func(e control.Event) bool { return e.Event == name && (gen == 0 || e.Generation == gen) }
}
