package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram bins: latencies are counted in microseconds, exactly below
// histLinear µs, then in histSub bins per doubling up to histTop µs (about
// 67s); longer latencies fall in the last bin. A bin's width is at most 1/8
// of its lower bound, so a quantile read from it is within about 6 % of the
// true value.
const (
	histSub    = 8
	histLinear = 2 * histSub
	histTopLog = 26 // 2^26 µs ≈ 67s
	histBins   = histLinear + (histTopLog-4)*histSub
)

// Histogram counts latencies in logarithmic bins: fixed size (about 800
// bytes) whatever the number of latencies added. The zero value is empty and
// ready to use.
type Histogram struct {
	// Count is the number of latencies added.
	Count int
	// Max is the largest latency added, exactly.
	Max  time.Duration
	bins [histBins]uint32
}

func histBin(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < histLinear {
		return int(us)
	}
	// us in [2^k, 2^(k+1)) with k >= 4; keep its top log2(histSub)+1 bits.
	k := bits.Len64(us) - 1
	if k >= histTopLog {
		return histBins - 1
	}
	shift := k - 3 // us>>shift in [8, 16)
	return histLinear + (k-4)*histSub + int(us>>shift) - histSub
}

// histBounds returns the latencies a bin covers, [lo, hi).
func histBounds(i int) (lo, hi time.Duration) {
	if i < histLinear {
		return time.Duration(i) * time.Microsecond, time.Duration(i+1) * time.Microsecond
	}
	k := (i-histLinear)/histSub + 4
	m := uint64((i-histLinear)%histSub + histSub)
	shift := k - 3
	return time.Duration(m<<shift) * time.Microsecond, time.Duration((m+1)<<shift) * time.Microsecond
}

// Add counts one latency.
func (h *Histogram) Add(d time.Duration) {
	h.bins[histBin(d)]++
	h.Count++
	h.Max = max(h.Max, d)
}

// Merge adds every latency counted in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.Count == 0 {
		return
	}
	for i, n := range o.bins {
		h.bins[i] += n
	}
	h.Count += o.Count
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the latency at percentile p (0..100) by the nearest-rank
// method, as the middle of the bin holding that rank (at most Max):
// Quantile(100) is Max. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(p float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	if p >= 100 {
		return h.Max
	}
	rank := max(int(math.Ceil(p/100*float64(h.Count))), 1)
	seen := 0
	for i, n := range h.bins {
		seen += int(n)
		if seen >= rank {
			lo, hi := histBounds(i)
			return min(lo+(hi-lo)/2, h.Max)
		}
	}
	return h.Max
}
