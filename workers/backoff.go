package workers

import (
	"math/rand/v2"
	"time"
)

// Respawn backoff defaults: a crashed worker waits min, then twice as long
// after each consecutive crash, up to max, with ±20% jitter so that workers
// crashing together do not restart in lockstep.
const (
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
	// stableAfter is how long a worker must have run for its slot's crash
	// count to start again from zero.
	stableAfter = 10 * time.Second
	// crashLoopAt is the consecutive crash count from which a slot is
	// reported as crash looping.
	crashLoopAt = 5
)

// backoff returns the wait before restart number n (from 1) of a slot.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	jitter := time.Duration(float64(d) * (rand.Float64()*0.4 - 0.2))
	return d + jitter
}
