package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/hotcluster/hotcluster/scripts/internal/benchjson"
)

func writeJSON(file string, c *combined) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(b, '\n'), 0o644)
}

// summary renders the Markdown summary: one row per scenario, then the
// steady-state ratio, the footprint and the charts.
func summary(c *combined, link string) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("# hotcluster benchmark summary\n\n")
	p("- date: %s\n- machine: %s\n", c.Date, c.Machine)
	if c.Load != "" {
		p("- load average before the run: %s\n", c.Load)
	}
	if c.Command != "" {
		p("- command: `%s`\n", c.Command)
	}
	p("\nEvery figure comes from internal/loadgen on loopback (raw HTTP/1.1, a failed round trip is counted, never retried); the drivers' own reports follow with the method. *Per event* gives median / max over the scenario's reloads (SIGHUP), upgrades (SIGUSR2) or edits.\n\n")
	p("| scenario | clients | requests | failed | req/s | p50 | p99 | max | per event (median / max) |\n")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range c.Runs {
		for _, s := range r.Scenarios {
			if s.Requests == 0 && s.Error != "" {
				p("| %s | %d | — | — | — | — | — | — | error: %s |\n", s.Label, s.Clients, cell(s.Error))
				continue
			}
			p("| %s | %d | %d | **%d**%s | %.0f | %s | %s | %s | %s |\n", s.Label, s.Clients, s.Requests, s.Failed,
				rate(s.Failed, s.Requests), s.ReqPerSec, ms(s.P50Ms), ms(s.P99Ms), ms(s.MaxMs), perEvent(&s))
		}
	}
	for _, r := range c.Runs {
		if len(r.Steady) > 0 {
			var parts []string
			for _, conn := range []string{"new per request", "keep-alive"} {
				var hot, bare float64
				n := 0
				for _, row := range r.Steady {
					if row.Connections == conn {
						hot, bare, n = hot+row.HotRPS, bare+row.BareRPS, n+1
					}
				}
				if n > 0 && bare > 0 {
					parts = append(parts, fmt.Sprintf("%s %.0f / %.0f req/s = **%.2f**", conn, hot/float64(n), bare/float64(n), hot/bare))
				}
			}
			p("\n**Steady state**, hotcluster / the same workers without it (mean over the rounds): %s.\n", strings.Join(parts, "; "))
		}
		if f := r.Footprint; f != nil {
			if f.Error != "" {
				p("\n**Master footprint**: error: %s\n", cell(f.Error))
			} else {
				p("\n**Master footprint** (no load): RSS **%.1f MiB** (peak %.1f MiB), %d threads, CPU **%.2f %%** of one CPU over %.0f s idle.\n",
					float64(f.RSSKiB)/1024, float64(f.HWMKiB)/1024, f.Threads, f.CPUIdlePct, f.IdleMs/1000)
			}
		}
		for _, e := range r.Errors {
			p("\n**Error** (%s): %s\n", r.Driver, cell(e))
		}
		if r.Interrupted {
			p("\n**%s was interrupted: its results are incomplete.**\n", r.Driver)
		}
	}
	if len(c.Charts) > 0 {
		p("\n## Charts\n\n")
		for _, f := range c.Charts {
			name := path.Base(f)
			p("![%s](%s)\n\n", strings.TrimSuffix(name, path.Ext(name)), path.Join(link, name))
		}
	}
	return w.String()
}

func perEvent(s *benchjson.Scenario) string {
	var parts []string
	add := func(what string, v []float64) {
		if m := measured(v); len(m) > 0 {
			parts = append(parts, fmt.Sprintf("%s %s / %s", what, ms(median(m)), ms(slices.Max(m))))
		}
	}
	add("new gen answering", s.NewGenMs)
	add("last old worker gone", s.OldGoneMs)
	add("old master gone", s.OldMasterExitMs)
	add("write→answer", s.AnswerMs)
	add("build", s.BuildMs)
	if len(parts) == 0 {
		return "—"
	}
	return fmt.Sprintf("%d × %s: %s", len(s.EventsMs), s.EventName, strings.Join(parts, "; "))
}

func measured(v []float64) []float64 {
	var out []float64
	for _, x := range v {
		if x >= 0 {
			out = append(out, x)
		}
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[(len(s)-1)/2]
}

func rate(failed, requests int) string {
	if failed == 0 || requests == 0 {
		return ""
	}
	return fmt.Sprintf(" (%.2f %%)", 100*float64(failed)/float64(requests))
}

func ms(f float64) string {
	switch {
	case f < 0:
		return "—"
	case f < 10:
		return fmt.Sprintf("%.2f ms", f)
	case f < 100:
		return fmt.Sprintf("%.1f ms", f)
	}
	return fmt.Sprintf("%.0f ms", f)
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.NewReplacer("|", " ", "\n", " ", "\r", " ", "`", "'").Replace(s)
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}
