// Package benchjson is the JSON form of the benchmark drivers' results
// (scripts/benchreload, scripts/benchdev), which scripts/benchsummary reads
// to print the summary table of scripts/bench and draw its charts. Times are
// in milliseconds (float), offsets from the start of a scenario's load; -1
// stands for a time that was not measured.
package benchjson

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// FlagSettings is the driver's command-line flags, for Report.Settings,
// without those named in skip (paths and outputs, which say nothing of the
// run).
func FlagSettings(skip ...string) map[string]string {
	m := map[string]string{}
	flag.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(skip, f.Name) {
			m[f.Name] = f.Value.String()
		}
	})
	return m
}

// Report is what one driver run measured.
type Report struct {
	// Driver is "benchreload" or "benchdev".
	Driver  string `json:"driver"`
	Date    string `json:"date"` // RFC 3339, UTC
	Machine string `json:"machine"`
	Command string `json:"command"`
	// Settings holds the driver's settings, by flag name.
	Settings    map[string]string `json:"settings"`
	Interrupted bool              `json:"interrupted,omitempty"`
	Scenarios   []Scenario        `json:"scenarios,omitempty"`
	Steady      []SteadyRow       `json:"steady,omitempty"`
	Footprint   *Footprint        `json:"footprint,omitempty"`
	Errors      []string          `json:"errors,omitempty"`
}

// Scenario is one load with events (reloads, upgrades, edits) during it.
type Scenario struct {
	// Key is unique and stable: "reload-new", "reload-plain-shared-keepalive",
	// "latency-new", "upgrade-keepalive", "dev-hotcluster", "dev-air"...
	Key string `json:"key"`
	// Kind is reload, latency, upgrade or dev.
	Kind        string `json:"kind"`
	Label       string `json:"label"`
	Connections string `json:"connections"` // "new per request" or "keep-alive"
	Clients     int    `json:"clients"`
	Error       string `json:"error,omitempty"`

	Requests       int            `json:"requests"`
	Failed         int            `json:"failed"`
	FailedReused   int            `json:"failed_on_reused,omitempty"`
	FailureReasons map[string]int `json:"failure_reasons,omitempty"`
	ReqPerSec      float64        `json:"req_per_s"`
	P50Ms          float64        `json:"p50_ms"`
	P99Ms          float64        `json:"p99_ms"`
	MaxMs          float64        `json:"max_ms"`

	// EventName names Events: "SIGHUP", "SIGUSR2" or "edit".
	EventName string `json:"event_name,omitempty"`
	// EventsMs are the events' offsets from the start of the load.
	EventsMs []float64 `json:"events_ms,omitempty"`
	// NewGenMs: per SIGHUP, until the first answer of the new generation.
	NewGenMs []float64 `json:"reload_to_new_generation_answer_ms,omitempty"`
	// OldGoneMs: per SIGHUP, until the last older worker exited.
	OldGoneMs []float64 `json:"reload_to_last_old_worker_exit_ms,omitempty"`
	// OldMasterExitMs: per SIGUSR2, until the old master exited.
	OldMasterExitMs []float64 `json:"upgrade_to_old_master_exit_ms,omitempty"`
	// AnswerMs and BuildMs: per edit, from the write to the first answer of
	// the new build, and the build's own time.
	AnswerMs []float64 `json:"edit_to_answer_ms,omitempty"`
	BuildMs  []float64 `json:"build_ms,omitempty"`

	MasterRSSKiB     int64   `json:"master_rss_kib,omitempty"`
	MasterCPULoadPct float64 `json:"master_cpu_load_pct,omitempty"`
	MasterCPUIdlePct float64 `json:"master_cpu_idle_pct,omitempty"`

	// Timeline has one point per loadgen.BucketWidth of the load.
	Timeline []Point `json:"timeline,omitempty"`
}

// Point is one bucket of a load's timeline: the round trips that completed
// in [TMs, TMs+100ms). The latencies are those of the successful ones (P50
// and P99 read from a histogram, within about 6 %), 0 when there were none.
type Point struct {
	TMs    float64 `json:"t_ms"`
	OK     int     `json:"ok"`
	Failed int     `json:"failed"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// SteadyRow is one steady-state round: hotcluster against bare workers.
type SteadyRow struct {
	Connections string  `json:"connections"`
	Round       int     `json:"round"`
	HotFirst    bool    `json:"hotcluster_first"`
	HotRPS      float64 `json:"hotcluster_req_per_s"`
	BareRPS     float64 `json:"bare_req_per_s"`
	HotFailed   int     `json:"hotcluster_failed"`
	BareFailed  int     `json:"bare_failed"`
}

// Footprint is the master's footprint without load.
type Footprint struct {
	RSSKiB     int64   `json:"rss_kib"`
	HWMKiB     int64   `json:"rss_peak_kib"`
	Threads    int64   `json:"threads"`
	CPUIdlePct float64 `json:"cpu_idle_pct"`
	IdleMs     float64 `json:"idle_ms"`
	Error      string  `json:"error,omitempty"`
}

// Ms converts d to milliseconds; a negative d (not measured) is -1.
func Ms(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return float64(d) / float64(time.Millisecond)
}

// MsList converts ds with Ms.
func MsList(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = Ms(d)
	}
	return out
}

// SetLoad fills the load's figures and timeline of s from r.
func (s *Scenario) SetLoad(r *loadgen.Result) {
	s.Requests, s.Failed, s.FailedReused = r.Requests, r.Failures, r.FailuresReused
	if len(r.Errors) > 0 {
		s.FailureReasons = r.Errors
	}
	s.ReqPerSec = r.Throughput()
	s.P50Ms, s.P99Ms, s.MaxMs = Ms(r.Percentile(50)), Ms(r.Percentile(99)), Ms(r.Percentile(100))
	s.Timeline = make([]Point, len(r.Timeline))
	for i, b := range r.Timeline {
		p := Point{TMs: Ms(time.Duration(i) * loadgen.BucketWidth), OK: b.Successes, Failed: b.Failures}
		if i < len(r.BucketLatencies) {
			h := &r.BucketLatencies[i]
			p.P50Ms, p.P99Ms, p.MaxMs = Ms(h.Quantile(50)), Ms(h.Quantile(99)), Ms(h.Max)
		}
		s.Timeline[i] = p
	}
}

// Write writes r to path as indented JSON.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read reads a Report written by Write.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return &r, nil
}
