package benchjson

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

func TestSetLoadAndRoundTrip(t *testing.T) {
	t.Parallel()
	r := &loadgen.Result{
		Requests: 4, Failures: 1, Errors: map[string]int{"read: EOF": 1}, Elapsed: time.Second,
		Latencies: []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond},
		Timeline:  []loadgen.Bucket{{Successes: 1, MaxLatency: time.Millisecond}, {Successes: 2, Failures: 1, MaxLatency: 9 * time.Millisecond}},
	}
	r.BucketLatencies = make([]loadgen.Histogram, 2)
	r.BucketLatencies[0].Add(time.Millisecond)
	r.BucketLatencies[1].Add(2 * time.Millisecond)
	r.BucketLatencies[1].Add(4 * time.Millisecond)
	var s Scenario
	s.SetLoad(r)
	if s.Requests != 4 || s.Failed != 1 || s.ReqPerSec != 3 || s.P50Ms != 2 || s.MaxMs != 4 {
		t.Errorf("scenario %+v", s)
	}
	if len(s.Timeline) != 2 || s.Timeline[1].TMs != 100 || s.Timeline[1].Failed != 1 || s.Timeline[1].MaxMs != 4 {
		t.Errorf("timeline %+v", s.Timeline)
	}
	if Ms(-time.Second) != -1 || !reflect.DeepEqual(MsList([]time.Duration{time.Millisecond, -1}), []float64{1, -1}) {
		t.Errorf("Ms, MsList")
	}
	rep := &Report{Driver: "benchreload", Scenarios: []Scenario{s}}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("read back %+v, want %+v", got, rep)
	}
}
