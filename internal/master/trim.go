package master

import (
	"context"
	"runtime/debug"
)

// trimmer hands the memory a turnover freed back to the system: each
// generation leaves garbage (its workers' buffers, goroutine stacks) that
// the runtime would otherwise keep mapped for minutes, and the master's
// memory should read the same after a thousand reloads as after one.
type trimmer struct{ c chan struct{} }

func newTrimmer() *trimmer { return &trimmer{c: make(chan struct{}, 1)} }

// poke asks for a trim without waiting: the pool's goroutine calls it.
func (t *trimmer) poke() {
	select {
	case t.c <- struct{}{}:
	default:
	}
}

// run trims after each poke until ctx ends. A forced collection of the
// master's small heap takes about a millisecond, once per generation.
func (t *trimmer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.c:
			debug.FreeOSMemory()
		}
	}
}
