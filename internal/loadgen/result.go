package loadgen

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// BucketWidth is the width of one [Result.Timeline] bucket.
const BucketWidth = 100 * time.Millisecond

// Result is what one [Run] measured.
type Result struct {
	// Requests counts the round trips attempted and completed, successfully
	// or not. Round trips interrupted by the end of the run are not counted
	// (see Aborted).
	Requests int
	// Failures counts round trips that failed: dial error, reset, EOF,
	// timeout, malformed response or a non-2xx status.
	Failures int
	// FailuresReused counts the failures that happened on a reused
	// keep-alive connection (included in Failures).
	FailuresReused int
	// Errors maps a short failure reason ("dial: connection refused",
	// "read: EOF", "status 502") to its count.
	Errors map[string]int
	// Latencies holds the latency of every successful round trip, sorted in
	// ascending order. A round trip's latency includes its dial, if any.
	Latencies []time.Duration
	// Aborted counts round trips in flight when the run ended; they are
	// neither requests nor failures.
	Aborted int
	// Dials counts the connections opened.
	Dials int
	// Start is when the run started; Timeline bucket i covers
	// [Start+i*BucketWidth, Start+(i+1)*BucketWidth).
	Start time.Time
	// Elapsed is how long the run took, until every client stopped.
	Elapsed time.Duration
	// Timeline holds successes, failures and the maximum latency per
	// BucketWidth, by the time each round trip completed.
	Timeline []Bucket
	// BucketLatencies, only with [Config.BucketLatencies], holds one
	// histogram per Timeline bucket of the latencies of the successful round
	// trips that completed in it.
	BucketLatencies []Histogram
}

// Bucket aggregates the round trips that completed in one interval.
type Bucket struct {
	Successes, Failures int
	// MaxLatency is the largest latency of any round trip (successful or
	// not) that completed in the interval.
	MaxLatency time.Duration
}

func (b *Bucket) add(o Bucket) {
	b.Successes += o.Successes
	b.Failures += o.Failures
	b.MaxLatency = max(b.MaxLatency, o.MaxLatency)
}

// Percentile returns the latency at percentile p (0..100) of the successful
// round trips by the nearest-rank method: Percentile(50) is the median,
// Percentile(100) the maximum. It returns 0 when there were none.
func (r *Result) Percentile(p float64) time.Duration {
	lat := r.Latencies
	if len(lat) == 0 {
		return 0
	}
	if !slices.IsSorted(lat) {
		lat = slices.Clone(lat)
		slices.Sort(lat)
	}
	rank := int(math.Ceil(p / 100 * float64(len(lat))))
	rank = min(max(rank, 1), len(lat))
	return lat[rank-1]
}

// Throughput returns successful round trips per second over Elapsed.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Failures) / r.Elapsed.Seconds()
}

// Window aggregates the Timeline buckets that overlap [from, to), offsets
// from Start.
func (r *Result) Window(from, to time.Duration) Bucket {
	var b Bucket
	first := max(int(from/BucketWidth), 0)
	for i := first; i < len(r.Timeline) && time.Duration(i)*BucketWidth < to; i++ {
		b.add(r.Timeline[i])
	}
	return b
}

// tripError is a failed round trip at one stage: dial, write, read (the
// response header) or body.
type tripError struct {
	stage string
	err   error
}

func (e *tripError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *tripError) Unwrap() error { return e.err }

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + strconv.Itoa(e.code) }

// reason turns a failure into a short, low-cardinality key for Result.Errors.
func reason(err error) string {
	var te *tripError
	if !errors.As(err, &te) {
		return err.Error()
	}
	return te.stage + ": " + cause(te.err)
}

func cause(err error) string {
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, errTooLarge):
		return "too large"
	case errors.As(err, &errno):
		return errno.Error()
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}
