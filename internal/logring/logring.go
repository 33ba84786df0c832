// Package logring keeps the last lines of the master's log in memory, for
// `hotcluster logs`: a bounded buffer that answers "the last N lines of
// worker 2" and streams new lines to followers (`logs -f`).
//
// Invariant: the buffer never holds more than its MaxLines lines or
// MaxBytes bytes (each line counted as its text plus [LineOverhead]), and
// [Ring.Add] never waits for a reader. Lines are kept per source (the
// master's own, and each worker slot of each generation); when the buffer
// is full the oldest line of the source that holds the most bytes goes
// first, so that a worker that floods evicts its own lines, not the last
// words of its neighbours. A follower that does not keep up loses lines,
// counted and reported to it, rather than slowing anyone.
package logring

import (
	"container/heap"
	"slices"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxLines = 10000
	DefaultMaxBytes = 4 << 20
	// LineOverhead is what a kept line costs beside its text, as counted
	// against MaxBytes: the Line itself, its slot in the buffer and the
	// allocation of its text.
	LineOverhead = 96 // unsafe.Sizeof(Line{}), 72, and the text's allocation
	// FollowBuffer bounds the lines waiting for one follower.
	FollowBuffer = 8192
)

// Config bounds a Ring. Zero fields take the defaults.
type Config struct {
	MaxLines int
	MaxBytes int64
}

// Line is one kept line.
type Line struct {
	// Seq numbers the lines in the order they were added.
	Seq  uint64
	Time time.Time
	Gen  uint64
	Text string
	Slot int32
	PID  int32
	// Priority is the line's syslog priority (3 error … 7 debug).
	Priority int8
	// Stream is the worker's output the line came from: 1 stdout, 2
	// stderr (as workers.Stream).
	Stream uint8
	// Master marks the master's own lines; the rest are workers'.
	Master bool
	Cut    bool
}

func (l *Line) cost() int64 { return int64(len(l.Text)) + LineOverhead }

// Filter selects lines. The zero Filter selects all.
type Filter struct {
	// Slot, when set, selects that worker slot's lines (not the master's).
	Slot *int
	// Gen, when not 0, selects that generation's lines (not the master's).
	Gen uint64
	// Since, when set, selects the lines of that time or later.
	Since time.Time
	// After selects the lines with a Seq above it.
	After uint64
}

// Match reports whether f selects l.
func (f *Filter) Match(l *Line) bool {
	if (f.Slot != nil || f.Gen != 0) && l.Master {
		return false
	}
	return (f.Slot == nil || int(l.Slot) == *f.Slot) && (f.Gen == 0 || l.Gen == f.Gen) &&
		!l.Time.Before(f.Since) && l.Seq > f.After
}

// sourceKey names where lines come from.
type sourceKey struct {
	master bool
	gen    uint64
	slot   int32
}

// source is the lines of one source, oldest first, in a ring that grows.
type source struct {
	key   sourceKey
	lines []Line // ring buffer
	head  int    // index of the oldest line
	n     int
	bytes int64
	index int // in the heap
}

func (s *source) push(l Line) {
	if s.n == len(s.lines) {
		grown := make([]Line, max(2*len(s.lines), 16))
		for i := 0; i < s.n; i++ {
			grown[i] = s.lines[(s.head+i)%len(s.lines)]
		}
		s.lines, s.head = grown, 0
	}
	s.lines[(s.head+s.n)%len(s.lines)] = l
	s.n++
	s.bytes += l.cost()
}

func (s *source) pop() Line {
	l := s.lines[s.head]
	s.lines[s.head] = Line{}
	s.head = (s.head + 1) % len(s.lines)
	s.n--
	s.bytes -= l.cost()
	if s.n < len(s.lines)/4 && len(s.lines) > 16 {
		shrunk := make([]Line, len(s.lines)/2)
		for i := 0; i < s.n; i++ {
			shrunk[i] = s.lines[(s.head+i)%len(s.lines)]
		}
		s.lines, s.head = shrunk, 0
	}
	return l
}

// at returns the i-th line from the oldest.
func (s *source) at(i int) *Line { return &s.lines[(s.head+i)%len(s.lines)] }

// bySize is a max-heap of sources by bytes held.
type bySize []*source

func (h bySize) Len() int           { return len(h) }
func (h bySize) Less(i, j int) bool { return h[i].bytes > h[j].bytes }
func (h bySize) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *bySize) Push(x any) { s := x.(*source); s.index = len(*h); *h = append(*h, s) }
func (h *bySize) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// Ring is the buffer. Its methods are safe for concurrent use.
type Ring struct {
	cfg Config

	mu        sync.Mutex
	seq       uint64
	lines     int
	bytes     int64
	sources   map[sourceKey]*source
	heap      bySize
	followers map[*Follower]struct{}
}

// New makes an empty Ring.
func New(cfg Config) *Ring {
	if cfg.MaxLines <= 0 {
		cfg.MaxLines = DefaultMaxLines
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	return &Ring{cfg: cfg, sources: make(map[sourceKey]*source), followers: make(map[*Follower]struct{})}
}

// Add keeps l (its Seq is set here), evicting what the bounds ask, and
// hands it to the followers whose filter selects it. It never blocks.
func (r *Ring) Add(l Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	l.Seq = r.seq
	k := sourceKey{master: l.Master, gen: l.Gen, slot: l.Slot}
	if l.Master {
		k.gen, k.slot = 0, 0
	}
	s := r.sources[k]
	if s == nil {
		s = &source{key: k}
		r.sources[k] = s
		heap.Push(&r.heap, s)
	}
	s.push(l)
	heap.Fix(&r.heap, s.index)
	r.lines++
	r.bytes += l.cost()
	for r.lines > r.cfg.MaxLines || r.bytes > r.cfg.MaxBytes {
		top := r.heap[0]
		old := top.pop()
		r.lines--
		r.bytes -= old.cost()
		if top.n == 0 {
			heap.Remove(&r.heap, top.index)
			delete(r.sources, top.key)
		} else {
			heap.Fix(&r.heap, top.index)
		}
	}
	for f := range r.followers {
		f.offer(&l)
	}
}

// Usage says what the Ring holds: lines, and bytes as counted against
// MaxBytes.
func (r *Ring) Usage() (lines int, bytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lines, r.bytes
}

// Limits returns the bounds the Ring keeps.
func (r *Ring) Limits() Config { return r.cfg }

// Last returns the last n lines f selects (all of them for n < 0), oldest
// first.
func (r *Ring) Last(f Filter, n int) []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastLocked(f, n)
}

func (r *Ring) lastLocked(f Filter, n int) []Line {
	if n == 0 {
		return nil
	}
	var out []Line
	for _, s := range r.sources {
		taken := 0
		for i := s.n - 1; i >= 0 && (n < 0 || taken < n); i-- {
			l := s.at(i)
			if l.Seq <= f.After || l.Time.Before(f.Since) {
				break // older still: none of the rest matches
			}
			if f.Match(l) {
				out = append(out, *l)
				taken++
			}
		}
	}
	slices.SortFunc(out, func(a, b Line) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	if n >= 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// Follow returns the last n lines f selects, as Last does, and a Follower
// that receives every later line f selects: nothing is missed or repeated
// between the two. Close the Follower when done.
func (r *Ring) Follow(f Filter, n int) ([]Line, *Follower) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.lastLocked(f, n)
	fl := &Follower{r: r, filter: f, wake: make(chan struct{}, 1)}
	r.followers[fl] = struct{}{}
	return last, fl
}

// Follower receives new lines. Wait on Wake, then Take them.
type Follower struct {
	r      *Ring
	filter Filter

	mu      sync.Mutex
	lines   []Line
	dropped uint64
	wake    chan struct{}
}

func (f *Follower) offer(l *Line) {
	if !f.filter.Match(l) {
		return
	}
	f.mu.Lock()
	if len(f.lines) >= FollowBuffer {
		f.dropped++
	} else {
		f.lines = append(f.lines, *l)
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Wake receives a value when there are lines to Take.
func (f *Follower) Wake() <-chan struct{} { return f.wake }

// Take returns the lines received since the last Take, and how many were
// dropped before them because the follower fell FollowBuffer lines
// behind.
func (f *Follower) Take() (lines []Line, dropped uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lines, dropped = f.lines, f.dropped
	f.lines, f.dropped = nil, 0
	return lines, dropped
}

// Close stops the Follower. Safe to call twice.
func (f *Follower) Close() {
	f.r.mu.Lock()
	delete(f.r.followers, f)
	f.r.mu.Unlock()
}
