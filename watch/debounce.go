package watch

import (
	"slices"
	"time"
)

// debouncer gathers the paths of one burst of changes. A burst starts with
// the first path added and ends when none has been added for quiet, or limit
// after it started, whichever comes first; C then delivers, and flush returns
// the burst and starts the next one. A debouncer belongs to one goroutine.
type debouncer struct {
	quiet, limit time.Duration
	timer        *time.Timer
	active       bool            // a burst has started
	first        time.Time       // when it started
	paths        map[string]bool // path → the burst's first event on it created it
	overflow     bool            // events were lost during the burst
}

// newDebouncer returns an idle debouncer. A limit below quiet is raised to
// quiet.
func newDebouncer(quiet, limit time.Duration) *debouncer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &debouncer{quiet: quiet, limit: max(limit, quiet), timer: t, paths: make(map[string]bool)}
}

// add records a change to path, created telling whether it was a creation,
// and starts or extends the burst.
func (d *debouncer) add(path string, created bool) {
	if _, seen := d.paths[path]; !seen {
		d.paths[path] = created
	}
	d.extend()
}

// lost records that events were lost, and starts or extends the burst.
func (d *debouncer) lost() {
	d.overflow = true
	d.extend()
}

func (d *debouncer) extend() {
	now := time.Now()
	if !d.active {
		d.active, d.first = true, now
	}
	// Since Go 1.23 Reset discards a value the timer may already have sent.
	d.timer.Reset(min(d.quiet, d.first.Add(d.limit).Sub(now)))
}

// C delivers once the current burst has ended; it is nil while no burst has
// started, so receiving from it blocks.
func (d *debouncer) C() <-chan time.Time {
	if !d.active {
		return nil
	}
	return d.timer.C
}

// flush ends the burst and returns its Change: the paths, sorted, except
// those that were created during the burst and are gone by now, which gone
// reports. ok is false when nothing remains to report.
func (d *debouncer) flush(gone func(path string) bool) (c Change, ok bool) {
	c.Overflow = d.overflow
	for p, created := range d.paths {
		if created && gone(p) {
			continue
		}
		c.Files = append(c.Files, p)
	}
	slices.Sort(c.Files)
	d.timer.Stop()
	clear(d.paths)
	d.active, d.overflow = false, false
	return c, len(c.Files) > 0 || c.Overflow
}

// stop releases the timer.
func (d *debouncer) stop() { d.timer.Stop() }

// merge adds c to a Change not yet delivered, if any.
func merge(pending *Change, c Change) *Change {
	if pending == nil {
		return &c
	}
	files := slices.Concat(pending.Files, c.Files)
	slices.Sort(files)
	return &Change{Files: slices.Compact(files), Overflow: pending.Overflow || c.Overflow}
}
