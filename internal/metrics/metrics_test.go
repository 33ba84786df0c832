package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// waitTimeout bounds every wait for the server under test.
const waitTimeout = 10 * time.Second

// serve runs Serve on a loopback port until the test ends, and returns the
// URL to scrape.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Serve did not return within %v of cancel", waitTimeout)
		}
	})
	return "http://" + ln.Addr().String() + "/metrics"
}

// scrape fetches url as Prometheus would and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// value returns the value of the one series of family name whose labels
// include want, and fails the test if there is not exactly one.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no metric %s", name)
	}
	var found []float64
	for _, m := range mf.GetMetric() {
		match := 0
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
				match++
			}
		}
		if match != len(want) {
			continue
		}
		switch {
		case m.Gauge != nil:
			found = append(found, m.GetGauge().GetValue())
		case m.Counter != nil:
			found = append(found, m.GetCounter().GetValue())
		case m.Histogram != nil:
			found = append(found, float64(m.GetHistogram().GetSampleCount()))
		default:
			t.Fatalf("%s: unexpected type %v", name, mf.GetType())
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(found))
	}
	return found[0]
}

func TestScrape(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		snap = Snapshot{
			Generation: 3,
			Workers: []Worker{
				{Slot: 0, Gen: 3, PID: 101, State: StateReady, RSS: 64 << 20, CPUTime: 1500 * time.Millisecond},
				{Slot: 1, Gen: 3, PID: 102, State: StateReady, RSS: 32 << 20, CPUTime: 250 * time.Millisecond},
				{Slot: 0, Gen: 2, PID: 91, State: StateDraining, RSS: 80 << 20, CPUTime: 20 * time.Second},
				{Slot: 1, Gen: 4, PID: 0, State: StateStarting},
			},
			LogDropped: 7,
			Listeners:  []Listener{{Name: "web", Foreign: 2}, {Name: "dns"}},
		}
		calls int
	)
	m := New(func() Snapshot {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return snap
	})
	url := serve(t, m.Handler())

	// Before any event: every state and outcome is present as 0.
	mfs := scrape(t, url)
	for _, o := range []string{OutcomeReady, OutcomeFailed} {
		if v := value(t, mfs, "hotcluster_reloads_total", map[string]string{"outcome": o}); v != 0 {
			t.Errorf("reloads{outcome=%q} = %v before any reload", o, v)
		}
	}
	for _, name := range []string{"hotcluster_worker_restarts_total", "hotcluster_worker_recycles_total"} {
		if v := value(t, mfs, name, nil); v != 0 {
			t.Errorf("%s = %v before any event", name, v)
		}
	}

	m.Reload(OutcomeReady, 40*time.Millisecond)
	m.Reload(OutcomeReady, 3*time.Second)
	m.Reload(OutcomeFailed, 61*time.Second)
	m.Restart()
	m.Restart()
	m.Recycle()

	mfs = scrape(t, url)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hotcluster_generation", nil, 3},
		{"hotcluster_workers", map[string]string{"state": StateReady}, 2},
		{"hotcluster_workers", map[string]string{"state": StateDraining}, 1},
		{"hotcluster_workers", map[string]string{"state": StateStarting}, 1},
		{"hotcluster_worker_resident_memory_bytes", map[string]string{"slot": "0", "generation": "3", "pid": "101"}, 64 << 20},
		{"hotcluster_worker_resident_memory_bytes", map[string]string{"slot": "0", "generation": "2", "pid": "91"}, 80 << 20},
		{"hotcluster_worker_cpu_seconds_total", map[string]string{"slot": "1", "generation": "3", "pid": "102"}, 0.25},
		{"hotcluster_worker_cpu_seconds_total", map[string]string{"slot": "0", "generation": "2", "pid": "91"}, 20},
		{"hotcluster_reloads_total", map[string]string{"outcome": OutcomeReady}, 2},
		{"hotcluster_reloads_total", map[string]string{"outcome": OutcomeFailed}, 1},
		{"hotcluster_reload_duration_seconds", nil, 3},
		{"hotcluster_worker_restarts_total", nil, 2},
		{"hotcluster_worker_recycles_total", nil, 1},
		{"hotcluster_log_lines_dropped_total", nil, 7},
		{"hotcluster_foreign_sockets", map[string]string{"listener": "web"}, 2},
		{"hotcluster_foreign_sockets", map[string]string{"listener": "dns"}, 0},
	}
	for _, c := range checks {
		if got := value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The worker with no process yet has no per-process series.
	if n := len(mfs["hotcluster_worker_resident_memory_bytes"].GetMetric()); n != 3 {
		t.Errorf("%d memory series, want 3", n)
	}

	h := mfs["hotcluster_reload_duration_seconds"].GetMetric()[0].GetHistogram()
	if got, want := h.GetSampleSum(), 64.04; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("reload duration sum = %v, want %v", got, want)
	}
	buckets := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		buckets[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	for le, want := range map[float64]uint64{0.01: 0, 0.05: 1, 5: 2, 60: 2} {
		if got := buckets[le]; got != want {
			t.Errorf("reload duration bucket le=%v = %d, want %d", le, got, want)
		}
	}

	// The master's own collectors.
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if mfs[name] == nil {
			t.Errorf("no metric %s", name)
		}
	}

	// The next scrape sees the pool as it is then: no stale workers.
	mu.Lock()
	snap = Snapshot{Generation: 4, Workers: []Worker{{Slot: 0, Gen: 4, PID: 201, State: StateReady, RSS: 1 << 20}}}
	mu.Unlock()
	mfs = scrape(t, url)
	if got := value(t, mfs, "hotcluster_generation", nil); got != 4 {
		t.Errorf("generation = %v after the change, want 4", got)
	}
	if got := value(t, mfs, "hotcluster_workers", map[string]string{"state": StateDraining}); got != 0 {
		t.Errorf("draining workers = %v, want 0", got)
	}
	if n := len(mfs["hotcluster_worker_resident_memory_bytes"].GetMetric()); n != 1 {
		t.Errorf("%d memory series after the change, want 1", n)
	}
	mu.Lock()
	if calls != 3 {
		t.Errorf("snapshot called %d times for 3 scrapes", calls)
	}
	mu.Unlock()
}

func TestServeStopsOnCancel(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	// A handler that is still busy when the context ends: Shutdown waits
	// for it, and Serve returns only after it has finished.
	entered, release := make(chan struct{}), make(chan struct{})
	var enter sync.Once
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enter.Do(func() { close(entered) })
		<-release
		fmt.Fprintln(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h) }()

	got := make(chan error, 1)
	go func() {
		c := http.Client{Timeout: waitTimeout}
		resp, err := c.Get("http://" + addr + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		got <- err
	}()
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("request never reached the handler")
	}

	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v while a request was in progress", err)
	default:
	}
	close(release)
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Serve did not return within %v of cancel", waitTimeout)
	}
	if err := <-got; err != nil {
		t.Errorf("request in progress at shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, waitTimeout); err == nil {
		c.Close()
		t.Error("listener still accepts after Serve returned")
	}
}

func TestServeClosedListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = Serve(context.Background(), ln, http.NotFoundHandler())
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve on a closed listener: %v, want net.ErrClosed", err)
	}
}
