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
// the output takes lines again, one notice, before them, says how many
// were lost in that burst. A write error (EPIPE once the reader has gone) drops the line the
// same way and is remembered for [Sink.Err].
//
// With [Config.Batch] the goroutine writes what is queued in writes of up
// to [BatchSize] bytes, so that a worker printing 100,000 lines a second
// costs the master a few hundred writes a second, not 100,000. A line is
// never split across two writes.
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

// BatchSize bounds one write of a batching Sink.
const BatchSize = 64 << 10

// Config configures a Sink. Zero fields take the defaults.
type Config struct {
	// MaxQueued bounds the bytes of lines waiting to be written.
	MaxQueued int
	// Notice, when set, makes the line written once the output has caught
	// up after lines were dropped, given their number. It is called from
	// the writing goroutine, and must not write to the Sink.
	Notice func(dropped uint64) []byte
	// Failed, when set, is called with the error of the first write that
	// failed after one that succeeded (so once per burst of failures, and
	// for the first failure), from the writing goroutine. It must not
	// write to the Sink.
	Failed func(error)
	// Batch writes what is queued in writes of up to BatchSize bytes, for
	// outputs that take a stream of bytes (a pipe, a terminal, a file);
	// not for one that wants a write per line (a datagram socket).
	Batch bool
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
	// failing: the last write failed (an EPIPE stays, a full disk or a
	// restarted journal may not).
	failing bool
	wake    chan struct{}

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

// Write queues a copy of p, which should be one or more whole lines, and
// returns at once. It never fails: a line that does not fit is dropped and
// counted.
func (s *Sink) Write(p []byte) (int, error) {
	s.Take(append([]byte(nil), p...))
	return len(p), nil
}

// Take is Write without the copy: the Sink owns p from now on, and the
// caller must not change it.
func (s *Sink) Take(p []byte) {
	s.mu.Lock()
	if s.closed || s.queued+len(p) > s.cfg.MaxQueued {
		s.burst++
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.queue = append(s.queue, p)
	s.queued += len(p)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Dropped returns how many lines were dropped so far: queue full, output
// gone, or written after Close.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// Err returns the first error the output returned, if any. The output may
// have recovered since (a disk that had filled up).
func (s *Sink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Sink) run() {
	defer close(s.done)
	var buf []byte
	if s.cfg.Batch {
		buf = make([]byte, 0, BatchSize)
	}
	for {
		s.mu.Lock()
		for len(s.queue) == 0 {
			closed := s.closed
			s.mu.Unlock()
			s.notice()
			if closed {
				return
			}
			<-s.wake
			s.mu.Lock()
		}
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for len(batch) > 0 {
			// The notice goes near the gap, also when the output never
			// catches up; after failures, once a write got through.
			s.notice()
			var n, size int // lines and bytes in this write
			var err error
			if s.cfg.Batch && len(batch) > 1 {
				buf = buf[:0]
				for n < len(batch) && (n == 0 || len(buf)+len(batch[n]) <= BatchSize) {
					buf = append(buf, batch[n]...)
					n++
				}
				size = len(buf)
				_, err = s.out.Write(buf)
			} else {
				n, size = 1, len(batch[0])
				_, err = s.out.Write(batch[0])
			}
			s.wrote(n, size, err)
			clear(batch[:n])
			batch = batch[n:]
		}
		if cap(buf) > 4*BatchSize {
			buf = make([]byte, 0, BatchSize) // after a line of a MiB
		}
	}
}

// notice writes the notice of the lines dropped since the last one, if
// any, unless the output is failing.
func (s *Sink) notice() {
	if s.cfg.Notice == nil {
		return
	}
	s.mu.Lock()
	burst := s.burst
	if s.failing || burst == 0 {
		s.mu.Unlock()
		return
	}
	s.burst = 0
	s.mu.Unlock()
	s.out.Write(s.cfg.Notice(burst))
}

// wrote accounts for a write of n lines, size bytes, that returned err.
func (s *Sink) wrote(n, size int, err error) {
	s.mu.Lock()
	s.queued -= size
	first := err != nil && !s.failing
	s.failing = err != nil
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		s.burst += uint64(n)
	}
	s.mu.Unlock()
	if err != nil {
		s.dropped.Add(uint64(n))
		if first && s.cfg.Failed != nil {
			s.cfg.Failed(err)
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
