package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// targetOverhead is the target for hotcluster: write to first new
// answer, minus the build's own time, median over the edits.
const targetOverhead = 150 * time.Millisecond

type report struct {
	bench       *bench
	command     string
	started     time.Time
	machine     string
	outcomes    []*outcome
	interrupted bool
}

func describeMachine() string {
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = " (" + strings.TrimSpace(v) + ")"
				break
			}
		}
	}
	goVersion := "go version: unknown"
	if out, err := exec.Command("go", "version").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d CPUs%s, Linux %s %s, %s (builds the app; the driver: %s)", runtime.NumCPU(), model, kernel, runtime.GOARCH, goVersion, runtime.Version())
}

// stats are the summary numbers of one scenario.
type stats struct {
	n                            int
	latency, build, minus, extra []time.Duration // extra: minus the build and the boot
	readyIn, closed              []time.Duration
	closedSwaps                  int
}

func (o *outcome) stats(boot time.Duration) stats {
	var s stats
	for _, e := range o.edits {
		if e.err != nil || e.latency <= 0 {
			continue
		}
		s.n++
		s.latency = append(s.latency, e.latency)
		if e.build >= 0 {
			s.build = append(s.build, e.build)
			s.minus = append(s.minus, e.latency-e.build)
			s.extra = append(s.extra, e.latency-e.build-boot)
		}
		if e.readyIn >= 0 {
			s.readyIn = append(s.readyIn, e.readyIn)
		}
		if e.closed > 0 {
			s.closedSwaps++
			s.closed = append(s.closed, e.closed)
		}
	}
	return s
}

func (r *report) markdown() string {
	b := r.bench
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("# Development loop: hotcluster and air\n\n")
	p("- date: %s\n", r.started.UTC().Format(time.RFC3339))
	p("- machine: %s\n", r.machine)
	p("- command: `%s`\n", r.command)
	air := "air " + b.airVersion
	if b.airVersion == "" {
		air = "air (version not given)"
	}
	p("- tools: hotcluster built from this tree (`--workers %d`, default `--debounce`), %s\n", b.workers, air)
	p("- app: a generated standard-library Go module (`module devapp`, one `main.go`) that sleeps %v (its boot) before it serves `version=<N> pid=<pid>`; under hotcluster it takes the inherited listener (fd 3) and sends `READY=1` to `NOTIFY_SOCKET` once booted, so hotcluster cuts over as soon as the new build serves (no `--ready-delay` guess); under air it listens on the port itself after its boot\n", b.boot)
	p("- load: %d clients of internal/loadgen (raw HTTP/1.1, a new connection per request, no retries) from just before the first edit to %v after the last new answer; edits %v apart (after the previous new answer)\n", b.clients, 500*time.Millisecond, b.gap)
	if r.interrupted {
		p("\n**Interrupted: the results below are incomplete.**\n")
	}

	p("\n## Method\n\n")
	p("Each edit rewrites `main.go` with the next version the way editors save (a temporary file in the same directory, then a rename over `main.go`), takes the time of the rename, then probes `GET /` every %v on a new connection until an answer says the new version: *write→answer* is that time minus the write's. ", b.poll)
	p("*Build* is the build's own time: for hotcluster the `build X` of its log line `gen K ready in … (build X, 1 file changed: main.go)`; for air the wall time of its build command, air's default `go build -o ./tmp/main .` run from a script that takes the clock before and after it (air prints no build time). ")
	p("*Failed* counts the background load's requests that failed (dial error, reset, EOF, timeout, non-2xx) over all %d edits; *worst outage* is the longest run of consecutive %v buckets of the load's timeline with at least one failure, and *port closed* is, per swap that had any, the time from the first refused probe to the new answer (median / max). ", b.edits, loadgen.BucketWidth)
	p("The Go build cache was warmed once per app directory (`go build` of version 1) before each tool started, so both tools compile the same edit against the same cache.\n")

	p("\n## Results\n\n")
	p("| tool | edits | write→answer median / p90 | build median | write→answer − build median / p90 | − build − boot (%v) median | requests | failed | failure reasons | worst outage | port closed |\n", b.boot)
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |\n")
	for _, o := range r.outcomes {
		s := o.stats(b.boot)
		if s.n == 0 {
			p("| %s | 0 | — | — | — | — | — | — | error: %s | — | — |\n", o.sc.label(), cell(o.err))
			continue
		}
		req, failed, reasons, outage := "—", "—", "—", "—"
		if o.load != nil {
			req, failed, reasons = fmt.Sprint(o.load.Requests), fmt.Sprintf("**%d**", o.load.Failures), errorsCell(o.load.Errors)
			if o.load.Requests > 0 {
				failed += fmt.Sprintf(" (%.2f %%)", 100*float64(o.load.Failures)/float64(o.load.Requests))
			}
			outage = outageCell(o.load)
		}
		closed := "none"
		if s.closedSwaps > 0 {
			closed = fmt.Sprintf("%d of %d swaps: %s / %s", s.closedSwaps, s.n, ms(pct(s.closed, 50)), ms(pct(s.closed, 100)))
		}
		p("| %s | %d%s | %s / %s | %s | **%s** / %s | %s | %s | %s | %s | %s | %s |\n",
			o.sc.label(), s.n, editsNote(o, s), ms(pct(s.latency, 50)), ms(pct(s.latency, 90)), msOrDash(s.build, 50),
			msOrDash(s.minus, 50), msOrDash(s.minus, 90), msOrDash(s.extra, 50), req, failed, reasons, outage, closed)
	}
	r.targetNote(&w)

	for _, o := range r.outcomes {
		if len(o.edits) == 0 && o.err == nil {
			continue
		}
		p("\n### %s\n\n", o.sc.label())
		p("Command (in the app directory): `%s`", shellQuote(o.argv))
		if o.warmBuild > 0 {
			p("; warm-up build of version 1: %s", ms(o.warmBuild))
		}
		p(".\n")
		if o.config != "" {
			p("\n```toml\n%s```\n", o.config)
		}
		if len(o.edits) > 0 {
			p("\n| edit | version | write→answer | build | − build | builds | hotcluster's ready-in | probes (refused) | port closed | failed requests until the next edit |\n")
			p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
			for i, e := range o.edits {
				if e.err != nil {
					p("| %d | %d | error: %s | | | | | | | |\n", i+1, e.version, cell(e.err))
					continue
				}
				minus := "—"
				if e.build >= 0 {
					minus = ms(e.latency - e.build)
				}
				closed := "—"
				if e.closed > 0 {
					closed = ms(e.closed)
				}
				p("| %d | %d | %s | %s | %s | %d | %s | %d (%d) | %s | %s |\n", i+1, e.version, ms(e.latency), msOrUnknown(e.build), minus,
					e.builds, msOrUnknown(e.readyIn), e.probes, e.refuse, closed, r.failuresAfter(o, i))
			}
		}
		if o.badBodies > 0 {
			p("\n%d answers of the load were not `version=<N> pid=<pid>`.\n", o.badBodies)
		}
		if o.err != nil {
			p("\nError: %s\n", cell(o.err))
		}
		if o.stopErr != nil {
			p("\nOn stop: %s\n", cell(o.stopErr))
		}
	}
	p("\nThe tools, their builds, the app and the clients share the machine's %d CPUs; builds run under the load.\n", runtime.NumCPU())
	return w.String()
}

// targetNote compares hotcluster with the targets.
func (r *report) targetNote(w *strings.Builder) {
	b := r.bench
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	for _, o := range r.outcomes {
		if o.sc.tool != "hotcluster" {
			continue
		}
		s := o.stats(b.boot)
		if len(s.minus) == 0 {
			p("\nTarget: hotcluster has no complete edit to compare with the targets.\n")
			return
		}
		minus := pct(s.minus, 50)
		verdict := "met"
		if minus > targetOverhead {
			verdict = "missed"
		}
		p("\n**Targets** (hotcluster): write→answer − build ≤ %s, median over the edits: **%s** (%s); ", ms(targetOverhead), verdict, ms(minus))
		if o.load != nil {
			v := "met"
			if o.load.Failures > 0 {
				v = "missed"
			}
			p("0 failed requests: **%s** (%d). ", v, o.load.Failures)
		}
		p("The first figure includes the app's own boot (%v, before the new build can answer at all) and the watcher's debounce (hotcluster's `--debounce`, default %v, a quiet time after the write before the build starts); without the boot the median is %s", b.boot, 100*time.Millisecond, ms(pct(s.extra, 50)))
		if len(s.readyIn) > 0 {
			p(", and hotcluster's own `ready in` (from the end of the debounce to the end of the turnover: build, boot, cut-over, then the wait until the old socket is quiet and a 20 ms grace) has a median of %s", ms(pct(s.readyIn, 50)))
		}
		p(". With a %v boot the 150 ms target cannot be met by any tool that waits for the new build to serve; what hotcluster adds is the column *− build − boot*.\n", b.boot)
	}
}

// failuresAfter counts the load's failures from edit i's write to the next
// edit's (or the end of the load), to the bucket.
func (r *report) failuresAfter(o *outcome, i int) string {
	if o.load == nil {
		return "—"
	}
	from := o.edits[i].wrote.Sub(o.load.Start)
	to := time.Duration(len(o.load.Timeline)) * loadgen.BucketWidth
	if i+1 < len(o.edits) {
		to = o.edits[i+1].wrote.Sub(o.load.Start)
	}
	// Window takes every bucket that overlaps; start at the bucket after
	// the one that holds the write if it is not at its start, so that no
	// failure is counted twice.
	if rem := from % loadgen.BucketWidth; rem != 0 {
		from += loadgen.BucketWidth - rem
	}
	if rem := to % loadgen.BucketWidth; rem != 0 {
		to += loadgen.BucketWidth - rem
	}
	return fmt.Sprint(o.load.Window(from, to).Failures)
}

// outageCell is the longest run of consecutive timeline buckets with a
// failure.
func outageCell(r *loadgen.Result) string {
	longest, run := 0, 0
	for _, b := range r.Timeline {
		if b.Failures > 0 {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if longest == 0 {
		return "none"
	}
	return fmt.Sprintf("%d ms (%d buckets)", longest*int(loadgen.BucketWidth/time.Millisecond), longest)
}

func editsNote(o *outcome, s stats) string {
	if len(o.edits) == s.n {
		return ""
	}
	return fmt.Sprintf(" of %d", len(o.edits))
}

// pct is the nearest-rank percentile, as loadgen's.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func msOrDash(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "—"
	}
	return ms(pct(ds, p))
}

func msOrUnknown(d time.Duration) string {
	if d < 0 {
		return "—"
	}
	return ms(d)
}

func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case math.Abs(f) < 10:
		return fmt.Sprintf("%.2f ms", f)
	case math.Abs(f) < 100:
		return fmt.Sprintf("%.1f ms", f)
	}
	return fmt.Sprintf("%.0f ms", f)
}

// errorsCell formats failure reasons by count, most frequent first.
func errorsCell(m map[string]int) string {
	if len(m) == 0 {
		return "—"
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return cell(strings.Join(parts, ", "))
}

var cellUnsafe = regexp.MustCompile(`[|\n\r` + "`" + `]+`)

// cell makes text safe inside a Markdown table cell.
func cell(v any) string {
	s := fmt.Sprint(v)
	s = cellUnsafe.ReplaceAllString(s, " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// shellQuote renders argv as a shell command line.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
