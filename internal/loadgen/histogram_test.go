package loadgen

import (
	"testing"
	"time"
)

func TestHistogramBins(t *testing.T) {
	t.Parallel()
	prev := -1
	for us := time.Duration(0); us < 1<<27; us = us*17/16 + 1 {
		d := us * time.Microsecond
		i := histBin(d)
		if i < prev || i >= histBins {
			t.Fatalf("histBin(%v) = %d after %d (bins %d)", d, i, prev, histBins)
		}
		prev = i
		lo, hi := histBounds(i)
		if i < histBins-1 && (d < lo || d >= hi) {
			t.Fatalf("%v in bin %d = [%v, %v)", d, i, lo, hi)
		}
		if lo > 0 && hi-lo > lo/8+time.Microsecond {
			t.Fatalf("bin %d = [%v, %v) is wider than 1/8 of its bound", i, lo, hi)
		}
	}
	if histBin(-time.Second) != 0 || histBin(time.Hour) != histBins-1 {
		t.Errorf("out-of-range latencies: bins %d and %d", histBin(-time.Second), histBin(time.Hour))
	}
}

func TestHistogramQuantile(t *testing.T) {
	t.Parallel()
	var a, b Histogram
	if a.Quantile(50) != 0 {
		t.Errorf("empty quantile = %v", a.Quantile(50))
	}
	// 1ms..100ms in a, 101ms..200ms in b.
	for i := 1; i <= 100; i++ {
		a.Add(time.Duration(i) * time.Millisecond)
		b.Add(time.Duration(100+i) * time.Millisecond)
	}
	a.Merge(&b)
	a.Merge(&Histogram{})
	if a.Count != 200 || a.Max != 200*time.Millisecond {
		t.Fatalf("count=%d max=%v, want 200, 200ms", a.Count, a.Max)
	}
	for p, want := range map[float64]time.Duration{1: 2, 50: 100, 99: 198, 100: 200} {
		want *= time.Millisecond
		got := a.Quantile(p)
		if got < want*15/16 || got > want*17/16 {
			t.Errorf("p%v = %v, want %v ± 6.25 %%", p, got, want)
		}
	}
}

func TestBucketLatencies(t *testing.T) {
	t.Parallel()
	addr, _ := newServer(t, hello)
	r := mustRun(t, Config{Addr: addr, Clients: 3, KeepAlive: true, MaxRequests: 300, Duration: 20 * time.Second, BucketLatencies: true})
	if r.Failures != 0 || len(r.BucketLatencies) != len(r.Timeline) {
		t.Fatalf("failures=%d, %d histograms for %d buckets", r.Failures, len(r.BucketLatencies), len(r.Timeline))
	}
	var n int
	for i, h := range r.BucketLatencies {
		if h.Count != r.Timeline[i].Successes {
			t.Errorf("bucket %d: histogram of %d, %d successes", i, h.Count, r.Timeline[i].Successes)
		}
		if h.Count > 0 && (h.Max != r.Timeline[i].MaxLatency || h.Quantile(50) > h.Max) {
			t.Errorf("bucket %d: max %v (timeline %v), p50 %v", i, h.Max, r.Timeline[i].MaxLatency, h.Quantile(50))
		}
		n += h.Count
	}
	if n != 300 {
		t.Errorf("histograms count %d round trips, want 300", n)
	}
	if r2 := mustRun(t, Config{Addr: addr, MaxRequests: 5, Duration: 20 * time.Second}); r2.BucketLatencies != nil {
		t.Errorf("BucketLatencies recorded without Config.BucketLatencies")
	}
}
