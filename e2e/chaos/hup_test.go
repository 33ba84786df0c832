//go:build chaos

package chaos

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPBurst sends bursts of SIGHUPs under load: the reloads coalesce,
// the master survives and ends with exactly N workers of one generation, and
// no request fails. The first burst is sent at once, so the kernel merges
// the signals still pending; in the second each SIGHUP is sent once the
// master logged the one before, so every one reaches the pool, most of them
// while a turnover is in progress.
func TestSIGHUPBurst(t *testing.T) {
	n, hups := *flagWorkers, *flagHUPs
	f := record(t, fmt.Sprintf("2 bursts of %d SIGHUPs: at once, then each as soon as the master logged the previous one (%d workers, %d clients, one connection per request)", hups, n, *flagClients))
	m := startMaster(t, n, modeServe, "--ready", "notify")
	l := startLoad(t, m.addr)

	// At once.
	from := m.next()
	start := time.Now()
	for i := 0; i < hups; i++ {
		m.signal(syscall.SIGHUP)
	}
	sent := time.Since(start)
	gen1, _ := settle(t, m, l, from, 1)
	handled1 := m.count(from, `^hotcluster: SIGHUP: reload$`)
	took1 := time.Since(start)

	// Each one delivered.
	from = m.next()
	start = time.Now()
	at := from
	for i := 0; i < hups; i++ {
		m.signal(syscall.SIGHUP)
		_, at = m.waitLine(at, `^hotcluster: SIGHUP: reload$`)
	}
	delivered := time.Since(start)
	gen2, final := settle(t, m, l, from, gen1)
	took2 := time.Since(start)

	res := l.stop()
	if m.exited() {
		t.Fatalf("master exited: %v", m.Err)
	}
	// Still the same n workers once the load stopped: no late reload.
	now := children(m.pid)
	if len(now) != n {
		t.Errorf("%d workers at the end, want %d", len(now), n)
	}
	for _, p := range now {
		if g := m.genOf(p.pid); g != gen2 {
			t.Errorf("worker %d is of gen %d, want %d", p.pid, g, gen2)
		}
	}
	failed := m.count(0, `^hotcluster: reload failed`)
	f.add(t, "at once: sent in", sent.Round(time.Microsecond).String())
	f.add(t, "at once: SIGHUPs the master saw (the kernel merges pending ones)", handled1)
	f.add(t, "at once: generations started", gen1-1)
	f.add(t, "at once: settled after", took1.Round(10*time.Millisecond).String())
	f.add(t, "one by one: delivered in", delivered.Round(time.Millisecond).String())
	f.add(t, "one by one: generations started", gen2-gen1)
	f.add(t, "one by one: settled after", took2.Round(10*time.Millisecond).String())
	f.add(t, "final", fmt.Sprintf("gen %d, %d workers", gen2, len(final)))
	f.add(t, "failed reloads", failed)
	f.add(t, "requests", res.Requests)
	f.add(t, "failed", res.Failures)
	f.add(t, "max latency", res.Percentile(100).Round(time.Millisecond).String())
	f.outcome(fmt.Sprintf("master survived; %d SIGHUPs at once gave %d turnover(s), %d delivered one by one gave %d; it ended with exactly %d workers of gen %d",
		hups, gen1-1, hups, gen2-gen1, n, gen2))

	if res.Failures != 0 {
		t.Errorf("%d failed requests, want 0: %s", res.Failures, errorsText(res.Errors))
	}
	if failed != 0 {
		t.Errorf("%d failed reloads", failed)
	}
	if gen2-gen1 > hups {
		t.Errorf("%d generations for %d SIGHUPs", gen2-gen1, hups)
	}
}

// settle waits until the newest generation started since output index from
// is ready and is all the master runs: exactly n workers, each answering. It
// returns that generation and its workers' PIDs.
func settle(t *testing.T, m *master, l *load, from, before int) (int, []int) {
	t.Helper()
	n := *flagWorkers
	startRx := regexp.MustCompile(`^hotcluster: gen (\d+): starting `)
	final := before
	var last []proc
	ok := poll(*flagTimeout, func() bool {
		for _, line := range m.output()[from:] {
			if sm := startRx.FindStringSubmatch(line); sm != nil {
				final, _ = strconv.Atoi(sm[1])
			}
		}
		if final == before || m.count(from, fmt.Sprintf(`^hotcluster: gen %d ready in `, final)) == 0 {
			return false
		}
		last = children(m.pid)
		if len(last) != n {
			return false
		}
		for _, p := range last {
			if m.genOf(p.pid) != final {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("not settled %s after the burst: newest generation %d, workers %v", *flagTimeout, final, last)
	}
	pids := make([]int, len(last))
	for i, p := range last {
		pids[i] = p.pid
	}
	if !l.waitAnswered(pids, *flagTimeout) {
		t.Fatalf("workers %v of gen %d did not all answer within %s", pids, final, *flagTimeout)
	}
	return final, pids
}
