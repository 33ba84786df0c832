//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRandomWorkerKills SIGKILLs a random worker at random moments under
// load. A killed worker can only fail the requests it had in flight (at most
// one per client, since each client has one request in flight), so the
// failures are bounded by kills × clients; the master respawns every slot.
func TestRandomWorkerKills(t *testing.T) {
	n, clients := *flagWorkers, *flagClients
	f := record(t, fmt.Sprintf("SIGKILL of a random worker every 0–%s for %s (%d workers, %d clients, one connection per request)",
		2**flagKillEvery, *flagKillFor, n, clients))
	// Deliberate kills, not a crash loop: no slot is given up.
	m := startMaster(t, n, modeServe, "--ready", "notify", "--max-restarts", "0")
	l := startLoad(t, m.addr)
	from := m.next()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(m.pid)))
	kills, skipped := 0, 0
	end := time.Now().Add(*flagKillFor)
	maxIter := int(*flagKillFor/time.Millisecond) + 1
	for i := 0; i < maxIter && time.Now().Before(end); i++ {
		gap := time.Duration(rng.Int64N(int64(2**flagKillEvery) + 1))
		timer := time.NewTimer(min(gap, time.Until(end)))
		select {
		case <-timer.C:
		case <-m.done:
			timer.Stop()
			t.Fatalf("master exited (%v) after %d kills", m.Err, kills)
		}
		live := children(m.pid)
		if len(live) < 2 {
			// Never the last one: with every worker dead the requests would
			// wait in the socket's queue for the respawn backoff (up to
			// 10s), which says nothing about killed workers.
			skipped++
			continue
		}
		ok, err := killChild(m.pid, live[rng.IntN(len(live))])
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			kills++
		}
	}
	lastKill := time.Now()
	t.Logf("%d kills, %d skipped with fewer than 2 workers alive", kills, skipped)

	// Each kill is seen and answered with a respawn.
	at := from
	for i := 0; i < kills; i++ {
		_, at = m.waitLine(at, `^hotcluster: gen 1 worker \d+ \(pid \d+\) exited: killed by signal SIGKILL .*; respawning in `)
	}
	// Every slot is back: n live children, one per slot, each answering.
	var pids []int
	var slots []int
	back := poll(*flagTimeout, func() bool {
		up := m.upWorkers(0, 1)
		pids, slots = pids[:0], slots[:0]
		for _, p := range children(m.pid) {
			if s, ok := up[p.pid]; ok {
				pids = append(pids, p.pid)
				slots = append(slots, s)
			}
		}
		slices.Sort(slots)
		return len(pids) == n && len(slices.Compact(slices.Clone(slots))) == n
	})
	if !back {
		t.Fatalf("slots %v (pids %v) alive %s after the last kill, want %d slots", slots, pids, *flagTimeout, n)
	}
	if !l.waitAnswered(pids, *flagTimeout) {
		t.Fatalf("workers %v did not all answer within %s", pids, *flagTimeout)
	}
	allBack := time.Since(lastKill)
	res := l.stop()
	if m.exited() {
		t.Fatalf("master exited: %v", m.Err)
	}
	if got := len(children(m.pid)); got != n {
		t.Errorf("%d workers at the end, want %d", got, n)
	}

	bound := kills * clients
	loops := m.count(from, `crash loop`)
	f.add(t, "kills", kills)
	f.add(t, "kills skipped (fewer than 2 alive)", skipped)
	f.add(t, "requests", res.Requests)
	f.add(t, "failed", res.Failures)
	f.add(t, "bound (kills × clients)", bound)
	f.add(t, "failure reasons", errorsText(res.Errors))
	f.add(t, "respawns logged", m.count(from, `exited: killed by signal SIGKILL .*; respawning in `))
	f.add(t, "crash-loop reports", loops)
	f.add(t, "all slots answering after the last kill", allBack.Round(10*time.Millisecond).String())
	f.add(t, "p99 latency", res.Percentile(99).Round(time.Microsecond).String())
	f.outcome(fmt.Sprintf("every kill respawned in its slot (%d of %d slots back, each answering); failures only on requests in flight on a killed worker", n, n))

	if res.Failures > bound {
		t.Errorf("%d failed requests, more than kills × clients = %d: %s", res.Failures, bound, errorsText(res.Errors))
	}
	for reason := range res.Errors {
		// A refused or failed dial would mean the socket itself went away.
		if strings.HasPrefix(reason, "dial") {
			t.Errorf("failed dials (%s): the listening socket was not there", errorsText(res.Errors))
		}
	}
	if res.Requests-res.Failures == 0 {
		t.Error("no request succeeded")
	}
	if kills == 0 {
		t.Error("no worker was killed")
	}
}
