// Package logsink writes the master's log lines, its own and its workers',
// to the master's output without ever making the writer wait.
//
// Invariant: [Sink.Write] never blocks on the output. A reader that stops
// reading (a stalled terminal, a stuck log collector, a full pipe) or goes
// away (hotcluster run … | head) costs lines, counted and reported, never a
// stalled master: the pool's loop, signal handling and the control socket
// all log, and none of them may hang behind a pipe.
//
// Lines wait in a queue bounded in bytes; one goroutine writes them out in
// order. When the queue is full, new lines are dropped and counted; once
// the output has caught up, one notice says how many were lost in that
// burst. A write error (EPIPE once the reader has gone) drops the line the
// same way and is remembered for [Sink.Err].
//
// A write that the kernel blocks cannot be cancelled without changing the
// O_NONBLOCK flag of the output's open file description, which the shell or
// service manager shares; so [Sink.Close] waits for the queue to drain only
// until its deadline and then leaves the writing goroutine blocked in the
// kernel, to end with the process.
package logsink

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxQueued bounds the bytes waiting to be written.
const DefaultMaxQueued = 4 << 20

// Config configures a Sink. Zero fields take the defaults.
type Config struct {
	// MaxQueued bounds the bytes of lines waiting to be written.
	MaxQueued int
	// Notice, when set, makes the line written once the output has caught
	// up after lines were dropped, given their number. It is called from
	// the writing goroutine, and must not write to the Sink.
	Notice func(dropped uint64) []byte
}

// Sink is an io.Writer of whole lines. Its methods are safe for concurrent
// use.
type Sink struct {
	out io.Writer
	cfg Config

	mu     sync.Mutex
	queue  [][]byte
	queued int // bytes in queue
	burst  uint64
	closed bool
	err    error
	wake   chan struct{}

	dropped atomic.Uint64
	done    chan struct{}
}

// New starts writing to out; call Close to stop.
func New(out io.Writer, cfg Config) *Sink {
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	s := &Sink{out: out, cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	return s
}

// Write queues p, which should be one or more whole lines, and returns at
// once. It never fails: a line that does not fit is dropped and counted.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closed || s.queued+len(p) > s.cfg.MaxQueued {
		s.burst++
		s.mu.Unlock()
		s.dropped.Add(1)
		return len(p), nil
	}
	s.queue = append(s.queue, append([]byte(nil), p...))
	s.queued += len(p)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Dropped returns how many lines were dropped so far: queue full, output
// gone, or written after Close.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// Err returns the first error the output returned, if any.
func (s *Sink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Sink) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 {
			burst := s.burst
			s.burst = 0
			closed := s.closed
			// A broken output (EPIPE) stays broken: no notice can get
			// through it.
			broken := s.err != nil
			s.mu.Unlock()
			if burst > 0 && s.cfg.Notice != nil && !broken {
				s.out.Write(s.cfg.Notice(burst))
			}
			if closed {
				return
			}
			<-s.wake
			s.mu.Lock()
		}
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for i, line := range batch {
			if _, err := s.out.Write(line); err != nil {
				s.mu.Lock()
				if s.err == nil {
					s.err = err
				}
				s.burst++
				s.mu.Unlock()
				s.dropped.Add(1)
			}
			batch[i] = nil
			s.mu.Lock()
			s.queued -= len(line)
			s.mu.Unlock()
		}
	}
}

// Close stops taking lines and waits until the queued ones are written, or
// until timeout: a blocked output is given up on (see the package comment).
// It returns whether everything queued was written. Calling it again
// returns at once.
func (s *Sink) Close(timeout time.Duration) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
		return true
	case <-t.C:
		return false
	}
}
