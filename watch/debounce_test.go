package watch

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func neverGone(string) bool { return false }

func TestDebouncerQuietEndsBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(100*time.Millisecond, 2*time.Second)
		defer d.stop()
		if d.C() != nil {
			t.Fatal("C is not nil before any event")
		}
		start := time.Now()
		d.add("/b", false)
		// Inside the synctest bubble time is virtual: Sleep advances it
		// exactly, it does not wait for anything.
		time.Sleep(60 * time.Millisecond)
		d.add("/a", false)
		time.Sleep(60 * time.Millisecond)
		d.add("/b", false)
		<-d.C()
		if got, want := time.Since(start), 220*time.Millisecond; got != want {
			t.Errorf("burst ended after %v, want %v (100ms after the last event)", got, want)
		}
		c, ok := d.flush(neverGone)
		if !ok || !slices.Equal(c.Files, []string{"/a", "/b"}) || c.Overflow {
			t.Errorf("flush = %+v, %v; want Files [/a /b]", c, ok)
		}
		if d.C() != nil {
			t.Error("C is not nil after flush")
		}

		// The next burst starts afresh.
		start = time.Now()
		d.add("/c", false)
		<-d.C()
		if got := time.Since(start); got != 100*time.Millisecond {
			t.Errorf("second burst ended after %v, want 100ms", got)
		}
		if c, _ := d.flush(neverGone); !slices.Equal(c.Files, []string{"/c"}) {
			t.Errorf("second burst = %v, want [/c]", c.Files)
		}
	})
}

func TestDebouncerLimitCutsConstantStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(100*time.Millisecond, 2*time.Second)
		defer d.stop()
		start := time.Now()
		tick := time.NewTicker(30 * time.Millisecond) // never quiet for 100ms
		defer tick.Stop()
		var ends []time.Duration
		for time.Since(start) < 5*time.Second {
			select {
			case <-tick.C:
				d.add("/a", false)
			case <-d.C():
				ends = append(ends, time.Since(start))
				if c, ok := d.flush(neverGone); !ok || !slices.Equal(c.Files, []string{"/a"}) {
					t.Errorf("flush = %+v, %v; want Files [/a]", c, ok)
				}
			}
		}
		// First event at 30ms, cut 2s later; the next burst starts with the
		// tick at 2040ms.
		want := []time.Duration{2030 * time.Millisecond, 4040 * time.Millisecond}
		if !slices.Equal(ends, want) {
			t.Errorf("bursts ended at %v, want %v", ends, want)
		}
	})
}

func TestDebouncerLimitBelowQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(time.Second, 10*time.Millisecond)
		defer d.stop()
		start := time.Now()
		d.add("/a", false)
		<-d.C()
		if got := time.Since(start); got != time.Second {
			t.Errorf("burst ended after %v, want the 1s quiet time", got)
		}
	})
}

func TestDebouncerDropsTransientFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(100*time.Millisecond, 2*time.Second)
		defer d.stop()
		gone := func(p string) bool { return p == "/main.go.tmp" || p == "/x.tmp" || p == "/old.go" }
		d.add("/main.go.tmp", true) // an atomic save's temporary file
		d.add("/main.go.tmp", false)
		d.add("/main.go", false)
		d.add("/old.go", false) // removed, existed before the burst
		d.add("/new.go", true)
		<-d.C()
		c, ok := d.flush(gone)
		if want := []string{"/main.go", "/new.go", "/old.go"}; !ok || !slices.Equal(c.Files, want) {
			t.Errorf("flush = %+v, %v; want Files %v", c, ok, want)
		}

		d.add("/x.tmp", true)
		d.add("/main.go.tmp", true)
		<-d.C()
		if c, ok := d.flush(gone); ok {
			t.Errorf("a burst of transient files only gave %+v, want nothing", c)
		}
	})
}

func TestDebouncerOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(100*time.Millisecond, 2*time.Second)
		defer d.stop()
		d.lost()
		<-d.C()
		c, ok := d.flush(neverGone)
		if !ok || !c.Overflow || len(c.Files) != 0 {
			t.Errorf("flush = %+v, %v; want an empty Change with Overflow", c, ok)
		}
		d.add("/a", false)
		<-d.C()
		if c, _ := d.flush(neverGone); c.Overflow {
			t.Error("Overflow carried over into the next burst")
		}
	})
}

func TestMerge(t *testing.T) {
	c := merge(nil, Change{Files: []string{"/b"}})
	c = merge(c, Change{Files: []string{"/a", "/b"}, Overflow: true})
	if !slices.Equal(c.Files, []string{"/a", "/b"}) || !c.Overflow {
		t.Errorf("merge = %+v, want Files [/a /b] with Overflow", c)
	}
}
