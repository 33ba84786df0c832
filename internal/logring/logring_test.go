package logring

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func line(gen uint64, slot int, text string) Line {
	return Line{Time: time.Now(), Gen: gen, Slot: int32(slot), PID: int32(100 + slot), Stream: 1, Priority: 6, Text: text}
}

func texts(ls []Line) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Text)
	}
	return out
}

// The last lines, oldest first, by slot, by generation, since a time; the
// master's lines only without a worker filter.
func TestLastFilters(t *testing.T) {
	r := New(Config{})
	r.Add(line(1, 0, "a"))
	r.Add(line(1, 1, "b"))
	r.Add(Line{Master: true, Time: time.Now(), Text: "m", Priority: 6})
	mid := time.Now()
	r.Add(line(2, 0, "c"))
	r.Add(line(2, 1, "d"))
	one := 1
	for _, tc := range []struct {
		f    Filter
		n    int
		want string
	}{
		{Filter{}, -1, "a b m c d"},
		{Filter{}, 2, "c d"},
		{Filter{Slot: &one}, -1, "b d"},
		{Filter{Gen: 2}, 10, "c d"},
		{Filter{Since: mid}, -1, "c d"},
		{Filter{After: 3}, -1, "c d"},
		{Filter{}, 0, ""},
	} {
		if got := strings.Join(texts(r.Last(tc.f, tc.n)), " "); got != tc.want {
			t.Errorf("Last(%+v, %d) = %q, want %q", tc.f, tc.n, got, tc.want)
		}
	}
}

// Bounded in lines and bytes; a worker that floods evicts its own lines,
// and the last lines of the others stay.
func TestBoundsAndFairEviction(t *testing.T) {
	r := New(Config{MaxLines: 100, MaxBytes: 100 * (LineOverhead + 10)})
	for i := 0; i < 5; i++ {
		r.Add(line(1, 1, fmt.Sprintf("quiet %d", i)))
	}
	for i := 0; i < 10000; i++ {
		r.Add(line(1, 0, fmt.Sprintf("flood %04d", i)))
		if n, b := r.Usage(); n > 100 || b > 100*(LineOverhead+10) {
			t.Fatalf("after %d lines: %d lines, %d bytes held", i, n, b)
		}
	}
	one := 1
	if got := texts(r.Last(Filter{Slot: &one}, -1)); len(got) != 5 {
		t.Errorf("the quiet worker's lines: %q, want all 5", got)
	}
	zero := 0
	got := texts(r.Last(Filter{Slot: &zero}, -1))
	if len(got) < 90 || got[len(got)-1] != "flood 9999" {
		t.Errorf("the flooding worker keeps %d lines ending %q; want its last ~95", len(got), got[len(got)-1])
	}
	big := New(Config{MaxLines: 1000, MaxBytes: 10 << 10})
	big.Add(line(1, 0, strings.Repeat("x", 64<<10)))
	if n, b := big.Usage(); n != 0 || b != 0 {
		t.Errorf("a line over MaxBytes: %d lines, %d bytes held; want none", n, b)
	}
}

// A follower gets every later line its filter selects, after the last
// ones, with none missed or repeated; one that falls behind loses lines,
// counted, and Add never waits for it.
func TestFollow(t *testing.T) {
	r := New(Config{})
	r.Add(line(1, 0, "old"))
	one := 1
	last, f := r.Follow(Filter{Slot: &one}, 5)
	defer f.Close()
	if len(last) != 0 {
		t.Errorf("last %q, want none of slot 1", texts(last))
	}
	r.Add(line(1, 0, "not mine"))
	r.Add(line(1, 1, "mine"))
	select {
	case <-f.Wake():
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up")
	}
	got, dropped := f.Take()
	if strings.Join(texts(got), " ") != "mine" || dropped != 0 {
		t.Errorf("took %q, %d dropped", texts(got), dropped)
	}
	start := time.Now()
	for i := 0; i < FollowBuffer+100; i++ {
		r.Add(line(1, 1, "x"))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("adding to a stalled follower took %s", d)
	}
	got, dropped = f.Take()
	if len(got) != FollowBuffer || dropped != 100 {
		t.Errorf("took %d, dropped %d; want %d and 100", len(got), dropped, FollowBuffer)
	}
	f.Close()
	f.Close()
	r.Add(line(1, 1, "after close"))
	if got, _ := f.Take(); len(got) != 0 {
		t.Errorf("a closed follower got %q", texts(got))
	}
}

// The heap the Ring holds at its default bounds, full of lines from 8
// workers, compared with what it counts: 100-byte lines fill its line
// bound, 1 KiB and 64 KiB (cut) lines its byte bound. Run with -v for the
// figures (docs/benchmarks.md).
func TestMemoryAtDefaultSize(t *testing.T) {
	if unsafe.Sizeof(Line{})+24 > LineOverhead {
		t.Errorf("a Line is %d bytes: LineOverhead %d undercounts", unsafe.Sizeof(Line{}), LineOverhead)
	}
	for _, size := range []int{100, 1 << 10, 64 << 10} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := New(Config{})
		text := strings.Repeat("t", size)
		for i := 0; i < 3*DefaultMaxLines; i++ {
			l := line(1, i%8, "")
			l.Text = strings.Clone(text)
			r.Add(l)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		n, counted := r.Usage()
		heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("default ring, %d-byte lines: %d lines, %d bytes counted, %d bytes of heap (%.1f MiB)", size, n, counted, heap, float64(heap)/(1<<20))
		if want := min(DefaultMaxLines, int(DefaultMaxBytes/(int64(size)+LineOverhead))); n != want {
			t.Errorf("%d-byte lines: %d lines kept, want %d", size, n, want)
		}
		if heap > 2*DefaultMaxBytes {
			t.Errorf("%d-byte lines: the ring holds %d bytes of heap, over twice its %d bytes", size, heap, DefaultMaxBytes)
		}
		runtime.KeepAlive(r)
	}
}
