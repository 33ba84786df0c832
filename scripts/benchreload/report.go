package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

type report struct {
	bench       *bench
	command     string
	started     time.Time
	machine     string
	reloads     []*reloadOutcome
	upgrades    []*upgradeOutcome
	steady      steadyOutcome
	footprint   footprintOutcome
	rss         []*rssOutcome
	cleanup     error
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
	return fmt.Sprintf("%d CPUs%s, Linux %s %s, %s", runtime.NumCPU(), model, kernel, runtime.GOARCH, runtime.Version())
}

func (r *report) markdown() string {
	b := r.bench
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("# hotcluster reload benchmark\n\n")
	p("- date: %s\n", r.started.UTC().Format(time.RFC3339))
	p("- machine: %s\n", r.machine)
	p("- command: `%s`\n", r.command)
	p("- settings: %d workers, %d concurrent clients on loopback, load generator internal/loadgen (raw HTTP/1.1, no retries)\n", b.workers, b.clients)
	if len(b.sources) > 0 {
		p("- clients from %d loopback addresses (127.0.0.2 and up), client i from address i %% %d\n", len(b.sources), len(b.sources))
	}
	if r.interrupted {
		p("\n**Interrupted: the results below are incomplete.**\n")
	}

	if len(r.reloads) > 0 {
		p("\n## Reloads under load\n\n")
		p("hotcluster runs %d workers of examples/hello; the clients send GET / for %v while the driver sends SIGHUP to the master every %v. ", b.workers, b.duration, b.reloadEvery)
		p("A failed request is any dial error, reset, EOF, timeout or non-2xx answer. ")
		p("*Stall* is the highest latency of the requests that completed within %v after a SIGHUP (median and worst over the reloads); *before 1st reload* is the same maximum over the first %v, for comparison. ", b.stallWindow, b.reloadEvery)
		p("With keep-alive, *on reused* counts the failures of a request sent on a connection that had already served one: the server closed it while the request was on its way, which net/http's Transport would have retried silently. ")
		p("*Generations* are the lowest and highest `gen=` seen in answers during the load, then in one answer after it.\n\n")
		p("| worker shutdown | handoff | connections | SIGHUPs | generations | requests | failed | failure reasons | req/s | p50 | p99 | max | stall median / max | before 1st reload |\n")
		p("| --- | --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, o := range r.reloads {
			c := o.c
			if o.res == nil {
				p("| %s | %s | %s | — | — | — | — | error: %s | | | | | | |\n", c.worker(), c.handoffCell(), c.connections(), cell(o.err))
				continue
			}
			res := o.res
			p("| %s | %s | %s | %d | %d–%d, then %d | %d | **%d**%s | %s | %.0f | %s | %s | %s | %s / %s | %s |\n",
				c.worker(), c.handoffCell(), c.connections(), o.hups, o.gens.minGen, o.gens.maxGen, o.finalGen,
				res.Requests, res.Failures, reusedNote(res.Failures, res.FailuresReused), errorsCell(res.Errors), res.Throughput(),
				ms(res.Percentile(50)), ms(res.Percentile(99)), ms(res.Percentile(100)),
				ms(median(o.stalls)), ms(slices.Max(append([]time.Duration{0}, o.stalls...))), ms(o.preMax))
		}
		p("\n### Master process\n\n")
		p("RSS is VmRSS from /proc after the load; CPU is utime+stime from /proc in percent of one CPU, during the load (with its reloads) and then over %v without load (resolution: one clock tick, %.2f %%).\n\n", b.idleFor, 100/clockTicks/b.idleFor.Seconds())
		p("| worker shutdown | handoff | connections | master RSS | master CPU under load | master CPU idle |\n")
		p("| --- | --- | --- | ---: | ---: | ---: |\n")
		for _, o := range r.reloads {
			if o.res == nil || o.rss == 0 {
				continue
			}
			p("| %s | %s | %s | %.1f MiB | %.1f %% | %.2f %% |\n", o.c.worker(), o.c.handoffCell(), o.c.connections(), float64(o.rss)/1024, o.cpuLoad, o.cpuIdle)
		}
		r.latencySection(p)
		var errs []string
		for _, o := range r.reloads {
			if o.err != nil && o.res != nil {
				errs = append(errs, fmt.Sprintf("- %s: %s", o.c.label(), cell(o.err)))
			}
			if o.stopErr != nil {
				errs = append(errs, fmt.Sprintf("- %s, on stop: %s", o.c.label(), cell(o.stopErr)))
			}
		}
		if len(errs) > 0 {
			p("\n### Errors\n\n%s\n", strings.Join(errs, "\n"))
		}
	}

	if len(r.upgrades) > 0 {
		r.upgradeSection(p)
	}

	if len(r.steady.rows) > 0 || r.steady.err != nil {
		p("\n## Steady-state throughput\n\n")
		p("hotcluster with %d workers against %d hello processes started without it (`hello -addr 127.0.0.1:PORT -reuseport`, one SO_REUSEPORT socket each), no reloads, %d clients. ", b.workers, b.workers, b.clients)
		port := "one port"
		if r.steady.addr != "" {
			port = "`" + r.steady.addr + "`"
		}
		p("Both run on the same port, %s, chosen for this section alone, and never at once: each round starts one, waits until it answers, warms it up for %v in the round's connection mode (discarded, so that the port's TIME_WAIT backlog builds up alike), measures it for %v and stops it, then does the same with the other; which goes first alternates from round to round (ABBA). ", port, b.warmup, b.roundDuration)
		if r.steady.primed >= 0 {
			p("Before the first round, a throwaway server in the driver took new-connection load on the port until its TIME_WAIT count stopped growing (%d sockets), so that the first measurement starts like the others. ", r.steady.primed)
		}
		p("*TIME_WAIT* counts the sockets in that state on the port as each measurement started.\n\n")
		if len(r.steady.rows) > 0 {
			p("| connections | round | order | hotcluster req/s | bare req/s | hotcluster / bare | failed (hotcluster / bare) | TIME_WAIT (hotcluster / bare) |\n")
			p("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n")
			for _, m := range b.modes {
				var hot, bare float64
				n := 0
				for _, row := range r.steady.rows {
					if row.mode != m {
						continue
					}
					order := "hotcluster, bare"
					if !row.hotFirst {
						order = "bare, hotcluster"
					}
					p("| %s | %d | %s | %.0f | %.0f | %s | %d / %d | %s / %s |\n", m.name, row.round, order, row.hot.rps, row.bare.rps,
						ratio(row.hot.rps, row.bare.rps), row.hot.failed, row.bare.failed, count(row.hot.timeWait), count(row.bare.timeWait))
					hot += row.hot.rps
					bare += row.bare.rps
					n++
				}
				if n > 0 {
					p("| %s | **mean** | | **%.0f** | **%.0f** | **%s** | | |\n", m.name, hot/float64(n), bare/float64(n), ratio(hot, bare))
				}
			}
		}
		if r.steady.err != nil {
			p("\nError: %s\n", cell(r.steady.err))
		}
	}
	if r.footprint.ran {
		r.footprintSection(p)
	}
	if len(r.rss) > 0 {
		r.rssSection(p)
	}
	if r.cleanup != nil {
		p("\n## Cleanup errors\n\n%s\n", cell(r.cleanup))
	}
	p("\nClients, servers and the master share the machine's %d CPUs, so absolute numbers measure this machine under a saturating load, not hotcluster alone; the ratios and the failure counts are the point.\n", runtime.NumCPU())
	return w.String()
}

func reusedNote(failures, reused int) string {
	if reused == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d on reused)", reused)
}

func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 10:
		return fmt.Sprintf("%.2f ms", f)
	case f < 100:
		return fmt.Sprintf("%.1f ms", f)
	}
	return fmt.Sprintf("%.0f ms", f)
}

// count formats a count that is -1 when unknown.
func count(n int) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprint(n)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[(len(s)-1)/2]
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

func (r *report) upgradeSection(p func(string, ...any)) {
	b := r.bench
	p("\n## Binary upgrades under load\n\n")
	p("hotcluster runs %d workers of examples/hello (default graceful worker); the clients send GET / while the driver sends SIGUSR2 to the current master %d times, one every %v or as soon as the previous old master has exited, whichever is later, then keeps the load on for %v more. ", b.workers, b.upgrades, b.reloadEvery, b.reloadEvery)
	p("The master re-executes its own binary; the driver learns the new master's PID from the old master's log line `upgraded: master pid N took over` and waits until the old master is gone before the next SIGUSR2. ")
	p("A failed request is any dial error, reset, EOF, timeout or non-2xx answer. ")
	p("*Old master exit* is the time from a SIGUSR2 to the old master's exit (after it drained its workers), median and worst. ")
	p("*Generations* are the lowest and highest `gen=` seen in answers during the load, then in one answer after it (each new master starts a new generation, so %d after %d upgrades).\n\n", b.upgrades+1, b.upgrades)
	p("| connections | upgrades | generations | requests | failed | failure reasons | req/s | p50 | p99 | max | old master exit median / max |\n")
	p("| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n")
	var errs []string
	for _, o := range r.upgrades {
		if o.err != nil && o.res != nil {
			errs = append(errs, fmt.Sprintf("- connections %s: %s", o.mode.name, cell(o.err)))
		}
		if o.stopErr != nil {
			errs = append(errs, fmt.Sprintf("- connections %s, on stop: %s", o.mode.name, cell(o.stopErr)))
		}
		if o.res == nil {
			p("| %s | %d | — | — | — | error: %s | | | | | |\n", o.mode.name, o.upgrades, cell(o.err))
			continue
		}
		res := o.res
		p("| %s | %d | %d–%d, then %d | %d | **%d**%s | %s | %.0f | %s | %s | %s | %s / %s |\n",
			o.mode.name, o.upgrades, o.gens.minGen, o.gens.maxGen, o.finalGen,
			res.Requests, res.Failures, reusedNote(res.Failures, res.FailuresReused), errorsCell(res.Errors), res.Throughput(),
			ms(res.Percentile(50)), ms(res.Percentile(99)), ms(res.Percentile(100)),
			ms(median(o.exits)), ms(slices.Max(append([]time.Duration{0}, o.exits...))))
	}
	if len(errs) > 0 {
		p("\n### Errors\n\n%s\n", strings.Join(errs, "\n"))
	}
}

// latencySection reports, per reload scenario, how long a reload takes.
func (r *report) latencySection(p func(string, ...any)) {
	p("\n### Reload latency\n\n")
	p("Per SIGHUP: *new generation answering* is the time until the first answer (seen by any client of the load) from the generation it started; *last old worker exited* is the time until the last worker of the older generations was gone, as the master's children in /proc show it (polled every %v, so to %v). ", watchEvery, watchEvery)
	p("The old workers stop only once the new generation is ready and the old socket has nothing left to serve, so the second includes the new workers' boot, the drain and the workers' own shutdown. *Not seen* counts SIGHUPs for which either time is missing (the load ended first, or SIGHUPs coalesced).\n\n")
	p("| worker shutdown | handoff | connections | SIGHUPs | new generation answering median / max | last old worker exited median / max | not seen |\n")
	p("| --- | --- | --- | ---: | ---: | ---: | ---: |\n")
	for _, o := range r.reloads {
		if o.res == nil {
			continue
		}
		ng, og := measured(o.newGen), measured(o.oldGone)
		p("| %s | %s | %s | %d | %s | %s | %d |\n", o.c.worker(), o.c.handoffCell(), o.c.connections(), o.hups,
			medianMax(ng), medianMax(og), len(o.newGen)-min(len(ng), len(og)))
	}
}

// measured drops the times that were not measured (-1).
func measured(ds []time.Duration) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		if d >= 0 {
			out = append(out, d)
		}
	}
	return out
}

func medianMax(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	return ms(median(ds)) + " / " + ms(slices.Max(ds))
}

func (r *report) footprintSection(p func(string, ...any)) {
	f, b := r.footprint, r.bench
	p("\n## Master footprint\n\n")
	p("hotcluster with %d workers of examples/hello, after it answered and took the warm-up load (%v), then %v without any load: the master's CPU use over that time (utime+stime from /proc, in percent of one CPU; resolution one clock tick, %.2f %%), then its VmRSS, VmHWM (peak RSS) and thread count from /proc/PID/status.\n\n", b.workers, b.warmup, b.idleFor, 100/clockTicks/b.idleFor.Seconds())
	if err := errors.Join(f.err, f.stopErr); err != nil {
		p("Error: %s\n\n", cell(err))
	}
	if f.rss == 0 {
		return
	}
	p("| master RSS | peak RSS | threads | CPU idle |\n| ---: | ---: | ---: | ---: |\n")
	p("| %.1f MiB | %.1f MiB | %d | %.2f %% |\n", float64(f.rss)/1024, float64(f.hwm)/1024, f.threads, f.cpuIdle)
}
