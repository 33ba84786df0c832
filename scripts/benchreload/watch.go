package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// watchEvery is how often a genWatcher looks at the master's children: the
// resolution of the times it reports.
const watchEvery = 5 * time.Millisecond

// genWatcher follows the workers of one master from /proc while it runs: the
// master's children (every /proc/MASTER/task/TID/children, since a child
// belongs to the thread that forked it), each one's generation (its
// HOTCLUSTER_GENERATION, read once from /proc/PID/environ) and when it was
// first and last seen. A worker is gone once it is no longer a child, that is
// once the master has reaped it. Its goroutine is started by newGenWatcher
// and stopped by stop, which waits for it.
type genWatcher struct {
	master int
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	workers map[int]*watched
	polls   int
}

type watched struct {
	gen               int // 0 if unknown
	firstSeen, goneAt time.Time
}

func newGenWatcher(master int) *genWatcher {
	w := &genWatcher{master: master, done: make(chan struct{}), workers: map[int]*watched{}}
	w.poll()
	w.wg.Go(func() {
		t := time.NewTicker(watchEvery)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				w.poll()
			}
		}
	})
	return w
}

// stop ends the watch and waits for its goroutine; call it once.
func (w *genWatcher) stop() {
	close(w.done)
	w.wg.Wait()
}

func (w *genWatcher) poll() {
	now := time.Now()
	alive := map[int]bool{}
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(w.master) + "/task/*/children")
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		for field := range bytes.FieldsSeq(b) {
			if pid, err := strconv.Atoi(string(field)); err == nil {
				alive[pid] = true
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	for pid := range alive {
		x, ok := w.workers[pid]
		if !ok {
			x = &watched{firstSeen: now}
			w.workers[pid] = x
		}
		if x.gen == 0 {
			x.gen = generationOf(pid)
		}
	}
	for pid, x := range w.workers {
		if x.goneAt.IsZero() && !alive[pid] {
			x.goneAt = now
		}
	}
}

// generationOf reads HOTCLUSTER_GENERATION from the environment pid started
// with; 0 if unknown (for a moment after fork, before the exec).
func generationOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return 0
	}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("HOTCLUSTER_GENERATION=")); ok {
			g, _ := strconv.Atoi(string(v))
			return g
		}
	}
	return 0
}

// lastGone returns, for the workers of generations up to gen that were
// alive at t, the latest time one of them was seen gone; ok is false if one
// of them is still there or none was alive at t.
func (w *genWatcher) lastGone(gen int, t time.Time) (last time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, x := range w.workers {
		if x.gen == 0 || x.gen > gen || x.firstSeen.After(t) || (!x.goneAt.IsZero() && x.goneAt.Before(t)) {
			continue
		}
		if x.goneAt.IsZero() {
			return time.Time{}, false
		}
		n++
		if x.goneAt.After(last) {
			last = x.goneAt
		}
	}
	return last, n > 0
}

// generations returns the generations seen, in order.
func (w *genWatcher) generations() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gens []int
	for _, x := range w.workers {
		if x.gen > 0 && !slices.Contains(gens, x.gen) {
			gens = append(gens, x.gen)
		}
	}
	slices.Sort(gens)
	return gens
}
