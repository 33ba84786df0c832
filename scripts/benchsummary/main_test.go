package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/scripts/internal/benchjson"
)

func sample() []*benchjson.Report {
	var tl []benchjson.Point
	for i := range 50 {
		p := benchjson.Point{TMs: float64(i * 100), OK: 100, P50Ms: 1, P99Ms: 5, MaxMs: 9}
		if i == 20 {
			p.Failed, p.MaxMs = 3, 40
		}
		tl = append(tl, p)
	}
	return []*benchjson.Report{{
		Driver: "benchreload", Machine: "test machine",
		Scenarios: []benchjson.Scenario{
			{Key: "reload-new", Kind: "reload", Label: "reload (SIGHUP), new per request", Clients: 32,
				Requests: 5000, Failed: 3, ReqPerSec: 1000, P50Ms: 1, P99Ms: 5, MaxMs: 40,
				EventName: "SIGHUP", EventsMs: []float64{1000, 2000, 3000}, NewGenMs: []float64{20, 30, -1},
				OldGoneMs: []float64{100, 120, 110}, Timeline: tl},
			{Key: "dev-air", Kind: "dev", Label: "dev loop, air", Clients: 8, Error: "boom | bang"},
		},
		Steady:    []benchjson.SteadyRow{{Connections: "keep-alive", Round: 1, HotRPS: 98, BareRPS: 100}},
		Footprint: &benchjson.Footprint{RSSKiB: 10240, HWMKiB: 11264, Threads: 8, IdleMs: 3000},
	}}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	c := &combined{Command: "scripts/bench", Runs: sample(), Charts: []string{"/x/latency-reload-new.png"}}
	got := summary(c, "docs/bench")
	for _, want := range []string{
		"| reload (SIGHUP), new per request | 32 | 5000 | **3** (0.06 %) | 1000 | 1.00 ms | 5.00 ms | 40.0 ms | 3 × SIGHUP: new gen answering 20.0 ms / 30.0 ms; last old worker gone 110 ms / 120 ms |",
		"| dev loop, air | 8 | — | — | — | — | — | — | error: boom   bang |",
		"keep-alive 98 / 100 req/s = **0.98**",
		"RSS **10.0 MiB** (peak 11.0 MiB), 8 threads",
		"![latency-reload-new](docs/bench/latency-reload-new.png)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}

func TestCharts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files, err := drawCharts(dir, sample())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "latency-reload-new.png"), filepath.Join(dir, "failures.png")}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Fatalf("charts %v, want %v", files, want)
	}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 100 {
			t.Errorf("%s: %v", f, b)
		}
	}
}
