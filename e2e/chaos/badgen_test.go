//go:build chaos

package chaos

import (
	"fmt"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// badGeneration is the common part of the tests below: a master whose gen 1
// serves under load.
type badGeneration struct {
	t *testing.T
	m *master
	l *load
}

func startBadGeneration(t *testing.T, firstMode string) *badGeneration {
	m := startMaster(t, *flagWorkers, firstMode, "--ready", "notify",
		"--ready-timeout", flagReadyTimeout.String(), "--drain-timeout", flagDrainTimeout.String())
	l := startLoad(t, m.addr)
	b := &badGeneration{t: t, m: m, l: l}
	if !l.waitAnswered(b.pids(1), *flagTimeout) {
		t.Fatalf("gen 1 did not answer within %s", *flagTimeout)
	}
	return b
}

// pids returns the PIDs of gen's workers.
func (b *badGeneration) pids(gen int) []int {
	var out []int
	for pid := range b.m.upWorkers(0, gen) {
		out = append(out, pid)
	}
	return out
}

// waitGone waits until none of pids exists any more and returns how long
// that took.
func (b *badGeneration) waitGone(what string, pids []int) time.Duration {
	b.t.Helper()
	start := time.Now()
	if !poll(*flagTimeout, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	}) {
		b.t.Fatalf("%s %v still alive after %s", what, pids, *flagTimeout)
	}
	return time.Since(start)
}

// onlyGen waits until the master's workers are exactly n of gen (a worker
// killed a moment ago may not be reaped yet).
func (b *badGeneration) onlyGen(gen int) {
	b.t.Helper()
	var kids []proc
	bad := 0
	if !poll(*flagTimeout, func() bool {
		kids = children(b.m.pid)
		bad = 0
		for _, p := range kids {
			if b.m.genOf(p.pid) != gen {
				bad++
			}
		}
		return len(kids) == *flagWorkers && bad == 0
	}) {
		b.t.Errorf("%d workers, %d of them not of gen %d, want %d of gen %d", len(kids), bad, gen, *flagWorkers, gen)
	}
}

// recover reloads with healthy workers into generation gen and waits for
// gen 1 to drain: the master is not stuck after the failed reload.
func (b *badGeneration) recover(from, gen int) {
	b.t.Helper()
	b.m.setMode(modeServe)
	b.m.reload(from, gen, 1)
	if !b.l.waitAnswered(b.pids(gen), *flagTimeout) {
		b.t.Fatalf("gen %d did not answer within %s", gen, *flagTimeout)
	}
	b.onlyGen(gen)
}

// finish stops the load and checks that no request failed.
func (b *badGeneration) finish(f *figure) {
	t := b.t
	res := b.l.stop()
	f.add(t, "requests", res.Requests)
	f.add(t, "failed", res.Failures)
	f.add(t, "answers by generation", gensText(b.l.gens()))
	if res.Failures != 0 {
		t.Errorf("%d failed requests, want 0: %s", res.Failures, errorsText(res.Errors))
	}
	if b.m.exited() {
		t.Errorf("master exited: %v", b.m.Err)
	}
}

// TestNewGenerationCrashes reloads into workers that exit before they are
// ready: the reload fails, the old generation keeps serving.
func TestNewGenerationCrashes(t *testing.T) {
	t.Parallel()
	f := record(t, fmt.Sprintf("SIGHUP into a generation whose workers exit 3 before ready (%d workers, %d clients)", *flagWorkers, *flagClients))
	b := startBadGeneration(t, modeServe)
	m := b.m
	m.setMode(modeCrash)
	from := m.next()
	start := time.Now()
	m.signal(syscall.SIGHUP)
	m.waitLine(from, `^hotcluster: reload failed: gen 2 worker \d+ \(pid \d+\) exited before it was ready: exit status 3`)
	failedIn := time.Since(start)
	crashed := b.pids(2)
	gone := b.waitGone("gen 2 workers", crashed)
	if !b.l.waitAnswered(b.pids(1), *flagTimeout) {
		t.Fatalf("gen 1 did not answer after the failed reload")
	}
	b.onlyGen(1)
	if g := b.l.gens(); g[2] != 0 {
		t.Errorf("gen 2 answered %d requests", g[2])
	}
	b.recover(m.next(), 3)
	f.add(t, "reload failed after", failedIn.Round(time.Millisecond).String())
	f.add(t, "gen 2 workers seen starting (the first exit fails the reload)", len(crashed))
	f.add(t, "gen 2 all gone after the failure", gone.Round(time.Millisecond).String())
	b.finish(f)
	f.outcome("reload failed at the first exit, the rest of gen 2 was killed, gen 1 kept serving; the next SIGHUP (gen 3) worked")
}

// TestNewGenerationHangs reloads into workers that take the socket but never
// report ready: the reload fails after --ready-timeout and they are killed.
func TestNewGenerationHangs(t *testing.T) {
	t.Parallel()
	f := record(t, fmt.Sprintf("SIGHUP into a generation that never reports ready, --ready-timeout %s (%d workers, %d clients)", *flagReadyTimeout, *flagWorkers, *flagClients))
	b := startBadGeneration(t, modeServe)
	m := b.m
	m.setMode(modeHang)
	from := m.next()
	start := time.Now()
	m.signal(syscall.SIGHUP)
	m.waitLine(from, `^hotcluster: reload failed: gen 2 not ready within --ready-timeout `+regexp.QuoteMeta(flagReadyTimeout.String())+`; still waiting for worker`)
	failedIn := time.Since(start)
	hung := b.pids(2)
	if len(hung) != *flagWorkers {
		t.Errorf("%d gen 2 workers started, want %d", len(hung), *flagWorkers)
	}
	gone := b.waitGone("gen 2 workers", hung)
	if failedIn < *flagReadyTimeout {
		t.Errorf("reload failed after %s, before --ready-timeout %s", failedIn, *flagReadyTimeout)
	}
	b.onlyGen(1)
	if g := b.l.gens(); g[2] != 0 {
		t.Errorf("gen 2 answered %d requests", g[2])
	}
	b.recover(m.next(), 3)
	f.add(t, "reload failed after", failedIn.Round(time.Millisecond).String())
	f.add(t, "hung workers killed", fmt.Sprintf("%d, gone %s after the failure", len(hung), gone.Round(time.Millisecond)))
	b.finish(f)
	f.outcome("reload failed at --ready-timeout, the hung workers were SIGKILLed, gen 1 kept serving; the next SIGHUP (gen 3) worked")
}

// TestStuckGenerationIsKilled reloads away from workers that ignore SIGTERM:
// the new generation serves, the old one is SIGKILLed after --drain-timeout.
func TestStuckGenerationIsKilled(t *testing.T) {
	t.Parallel()
	f := record(t, fmt.Sprintf("SIGHUP away from a generation that ignores SIGTERM, --drain-timeout %s (%d workers, %d clients)", *flagDrainTimeout, *flagWorkers, *flagClients))
	b := startBadGeneration(t, modeIgnoreTerm)
	m := b.m
	stuck := b.pids(1)
	m.setMode(modeServe)
	from := m.next()
	hup := time.Now()
	m.signal(syscall.SIGHUP)
	_, at := m.waitLine(from, `^hotcluster: gen 2 ready in `)
	// The stop signal follows the ready line at once: this is a little
	// later than the master sent it.
	signalled := time.Now()
	for range stuck {
		_, at = m.waitLine(at, `^hotcluster: gen 1 worker \d+ \(pid \d+\) still running `+regexp.QuoteMeta(flagDrainTimeout.String())+` after the stop signal \(--drain-timeout\); killing it`)
	}
	m.waitLine(from, `^hotcluster: gen 1 drained$`)
	gone := b.waitGone("gen 1 workers", stuck)
	killedAfter := time.Since(signalled)
	if d := time.Since(hup); d < *flagDrainTimeout {
		t.Errorf("gen 1 gone %s after the SIGHUP, before --drain-timeout %s", d, *flagDrainTimeout)
	}
	if k := m.count(from, `^hotcluster: gen 1 worker \d+ \(pid \d+\) drained: killed by signal SIGKILL`); k != len(stuck) {
		t.Errorf("%d gen 1 workers reported killed by SIGKILL, want %d", k, len(stuck))
	}
	if !b.l.waitAnswered(b.pids(2), *flagTimeout) {
		t.Fatalf("gen 2 did not answer within %s", *flagTimeout)
	}
	b.onlyGen(2)
	f.add(t, "stuck workers", len(stuck))
	f.add(t, "gone after the stop signal (as seen in the log)", killedAfter.Round(time.Millisecond).String())
	f.add(t, "waited after the drained line", gone.Round(time.Millisecond).String())
	b.finish(f)
	f.outcome("gen 2 took the traffic; gen 1 ignored SIGTERM, was SIGKILLed at --drain-timeout and reported drained")
}
