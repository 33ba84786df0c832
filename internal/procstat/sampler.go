package procstat

import (
	"sync"
	"time"
)

// DefaultMinInterval is the [Sampler.MinInterval] used when it is zero. With
// CPU time counted in 10ms ticks, a one-second window keeps the rounding
// error of a share within about one percentage point.
const DefaultMinInterval = time.Second

// Sampler turns successive readings of processes into CPU shares. The zero
// value is ready to use; all methods are safe to call from several
// goroutines at once, for example a metrics scrape and a status request.
type Sampler struct {
	// MinInterval is the shortest time between the two readings a share is
	// computed from. A reading that comes sooner after the last one kept for
	// its process is not kept, and the previous share is returned for it,
	// so callers that sample at nearly the same time get the same steady
	// answer rather than tick-rounding noise. Zero means DefaultMinInterval.
	// Set it before the first call.
	MinInterval time.Duration

	mu   sync.Mutex
	last map[int]sample
}

type sample struct {
	base  Stat    // the reading the next share is measured from
	share float64 // the share computed when base was kept
}

// CPUPercent returns the CPU share process pid has used between the reading
// last kept for it and now, in percent of one CPU: 100 is one core
// busy for the whole time, 250 two and a half. It returns 0 for the first
// reading of a process, and for the first reading after the PID was reused
// by another process (a different Started). now is a reading of pid,
// normally from [Read]; pid, not now.PID, selects what it is compared with.
// A zero At is taken as the time of the call.
//
// Every process passed in is remembered until [Sampler.Forget] drops it.
func (s *Sampler) CPUPercent(pid int, now Stat) float64 {
	if now.At.IsZero() {
		now.At = time.Now()
	}
	minInterval := s.MinInterval
	if minInterval <= 0 {
		minInterval = DefaultMinInterval
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = make(map[int]sample)
	}
	prev, ok := s.last[pid]
	// A reading older than the kept one comes from a caller that read
	// /proc before another caller got the lock; it has nothing new.
	if ok && prev.base.Started.Equal(now.Started) && !now.At.After(prev.base.At) {
		return prev.share
	}
	if !ok || !prev.base.Started.Equal(now.Started) || now.CPUTime < prev.base.CPUTime {
		s.last[pid] = sample{base: now}
		return 0
	}
	elapsed := now.At.Sub(prev.base.At)
	if elapsed < minInterval {
		return prev.share
	}
	share := 100 * float64(now.CPUTime-prev.base.CPUTime) / float64(elapsed)
	s.last[pid] = sample{base: now, share: share}
	return share
}

// Forget drops what the sampler remembers about every process for which
// keep returns false, so that memory stays bounded as workers come and go.
// keep is called with the sampler locked and must not call back into it.
func (s *Sampler) Forget(keep func(pid int) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid := range s.last {
		if !keep(pid) {
			delete(s.last, pid)
		}
	}
}
