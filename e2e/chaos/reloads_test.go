//go:build chaos

package chaos

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// checkpoint is the master's resources after some reloads.
type checkpoint struct {
	reloads, fds, rssKiB, anonKiB, workers int
}

// TestConsecutiveReloads reloads one after the other under load, each
// waiting for the new generation to be ready and the old one drained: the
// master's descriptors and memory stay flat and no request fails.
func TestConsecutiveReloads(t *testing.T) {
	n, total := *flagWorkers, *flagReloads
	f := record(t, fmt.Sprintf("%d consecutive reloads (SIGHUP, wait ready and drained, repeat; %d workers, %d clients, one connection per request)", total, n, *flagClients))
	// Without the ring of `hotcluster logs`: it keeps up to 4 MiB of the
	// last lines by design (its bound has tests of its own), and it fills
	// over a thousand reloads, which the checks below would take for a
	// leak.
	m := startMaster(t, n, modeServe, "--ready", "notify", "--log-buffer", "0")
	l := startLoad(t, m.addr)
	if !l.waitAnswered(keys(m.upWorkers(0, 1)), *flagTimeout) {
		t.Fatalf("gen 1 did not answer within %s", *flagTimeout)
	}

	var cps []checkpoint
	measure := func(reloads int) {
		t.Helper()
		// After "drained" the master has reaped the old workers; give it
		// the moment it needs to close what it held for them (their
		// notify sockets, output pipes), bounded.
		var c checkpoint
		poll(*flagTimeout, func() bool {
			c = checkpoint{reloads: reloads, workers: len(children(m.pid))}
			return c.workers == n
		})
		var err error
		if c.fds, err = fdCount(m.pid); err != nil {
			t.Fatal(err)
		}
		if c.rssKiB, err = rssKiB(m.pid); err != nil {
			t.Fatal(err)
		}
		if c.anonKiB, err = statusKiB(m.pid, "RssAnon"); err != nil {
			t.Fatal(err)
		}
		t.Logf("after %d reloads: %d fds, VmRSS %d KiB (RssAnon %d KiB), %d workers", c.reloads, c.fds, c.rssKiB, c.anonKiB, c.workers)
		cps = append(cps, c)
	}
	half := total / 2
	measure(0)
	at := m.next()
	start := time.Now()
	// How long each reload took, from the SIGHUP to the old generation
	// drained, and its two parts.
	var took, toReady, toDrained []time.Duration
	for i := 1; i <= total; i++ {
		t0 := time.Now()
		m.signal(syscall.SIGHUP)
		_, a := m.waitLine(at, fmt.Sprintf(`^hotcluster: gen %d ready in `, i+1))
		_, b := m.waitLine(at, fmt.Sprintf(`^hotcluster: gen %d drained$`, i))
		at = max(a, b)
		took = append(took, time.Since(t0))
		toReady = append(toReady, m.lineTime(a-1).Sub(t0))
		toDrained = append(toDrained, m.lineTime(b-1).Sub(m.lineTime(a-1)))
		if i == half || i == total {
			measure(i)
		}
		if t.Failed() {
			break
		}
	}
	elapsed := time.Since(start)
	res := l.stop()
	failed := m.count(0, `^hotcluster: reload failed`)

	var cpText []string
	for _, c := range cps {
		cpText = append(cpText, fmt.Sprintf("%d: %d fds, %.1f MiB (anonymous %.1f MiB)", c.reloads, c.fds, float64(c.rssKiB)/1024, float64(c.anonKiB)/1024))
	}
	f.add(t, "reloads", len(took))
	f.add(t, "master after N reloads", strings.Join(cpText, " / "))
	f.add(t, "SIGHUP → new gen ready, median / p99 / max", spread(toReady))
	f.add(t, "ready → old gen drained, median / p99 / max", spread(toDrained))
	f.add(t, "whole reload, median / p99 / max", spread(took))
	f.add(t, "total", elapsed.Round(100*time.Millisecond).String())
	f.add(t, "requests", res.Requests)
	f.add(t, "failed", res.Failures)
	f.add(t, "failed reloads", failed)
	f.outcome(fmt.Sprintf("every reload replaced all %d workers; the master's descriptors and memory stayed flat", n))

	if res.Failures != 0 {
		t.Errorf("%d failed requests, want 0: %s", res.Failures, errorsText(res.Errors))
	}
	if failed != 0 {
		t.Errorf("%d failed reloads", failed)
	}
	if len(cps) != 3 {
		t.Fatalf("%d checkpoints, want 3", len(cps))
	}
	for _, c := range cps {
		if c.workers != n {
			t.Errorf("after %d reloads: %d workers, want %d", c.reloads, c.workers, n)
		}
	}
	for _, pair := range [][2]checkpoint{{cps[0], cps[1]}, {cps[1], cps[2]}, {cps[0], cps[2]}} {
		a, b := pair[0], pair[1]
		slack := *flagFDSlack
		if a.reloads == 0 {
			// The first reload adds the second generation's sockets, one
			// per worker slot with the eBPF selector (the group keeps them
			// for good: one set per generation index, two in turn here).
			slack += n - 1
		}
		if d := b.fds - a.fds; d > slack || d < -slack {
			t.Errorf("master descriptors %d after %d reloads, %d after %d: more than ±%d apart", a.fds, a.reloads, b.fds, b.reloads, slack)
		}
	}
	if d := cps[2].rssKiB - cps[0].rssKiB; d > *flagRSSSlack {
		t.Errorf("master VmRSS grew by %d KiB over %d reloads, more than %d KiB", d, total, *flagRSSSlack)
	}
	if d := cps[2].rssKiB - cps[1].rssKiB; d > *flagRSSSlack {
		t.Errorf("master VmRSS grew by %d KiB from %d to %d reloads, more than %d KiB", d, half, total, *flagRSSSlack)
	}
	// The master's own memory, past the warm-up: a leak of even a couple
	// of KiB per reload would show here.
	if d := cps[2].anonKiB - cps[1].anonKiB; d > *flagRSSSlack/4 {
		t.Errorf("master RssAnon grew by %d KiB from %d to %d reloads, more than %d KiB", d, half, total, *flagRSSSlack/4)
	}
}

// spread formats the median, 99th percentile and maximum of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%s / %s / %s", r(s[len(s)/2]), r(s[len(s)*99/100]), r(s[len(s)-1]))
}

func keys(m map[int]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}
