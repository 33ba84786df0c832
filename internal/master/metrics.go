package master

import (
	"context"
	"time"

	"github.com/hotcluster/hotcluster/internal/handoff"
	"github.com/hotcluster/hotcluster/internal/metrics"
	"github.com/hotcluster/hotcluster/internal/procstat"
	"github.com/hotcluster/hotcluster/workers"
)

// newMetrics makes the metrics of pool's workers, read at scrape time:
// the pool's snapshot, and one reading of /proc per worker; and of the
// foreign sockets on socks' addresses (socks may be nil).
func newMetrics(m *Master) *metrics.Metrics {
	pool, socks, dropped, rs := m.pool, m.socks, m.logs.Dropped, m.rescue
	return metrics.New(func() metrics.Snapshot {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := pool.Status(ctx)
		if err != nil {
			return metrics.Snapshot{LogDropped: dropped()}
		}
		snap := metrics.Snapshot{Generation: st.Current, LogDropped: dropped(), ErroredSlots: len(st.Errored)}
		if rs != nil {
			r := rs.Status()
			snap.Rescue = &metrics.Rescue{Relays: r.Relays, Queued: r.Queued, Reset: r.Reset}
		}
		for _, w := range st.Workers {
			mw := metrics.Worker{Slot: w.Slot, Gen: w.Gen, PID: w.PID, State: w.State}
			if s, err := procstat.Read(w.PID); err == nil {
				mw.RSS, mw.CPUTime = s.RSS, s.CPUTime
			}
			snap.Workers = append(snap.Workers, mw)
		}
		if socks != nil {
			n := make(map[string]int)
			for _, f := range socks.Foreign() {
				n[f.Listener]++
			}
			for _, l := range socks.Listeners() {
				if l.Mode == handoff.Steered {
					snap.Listeners = append(snap.Listeners, metrics.Listener{Name: l.Spec.Name, Foreign: n[l.Spec.Name]})
				}
			}
		}
		return snap
	})
}

// countEvent counts what the metrics count from the pool's events.
func (m *Master) countEvent(e workers.Event) {
	mt := m.mt
	switch e.Kind {
	case workers.GenReady:
		if m.firstReady.Swap(false) {
			return
		}
		mt.Reload("ready", e.Took)
	case workers.GenFailed:
		mt.Reload("failed", e.Took)
	case workers.WorkerRespawn:
		mt.Restart()
	case workers.WorkerRecycle:
		mt.Recycle()
	}
}
