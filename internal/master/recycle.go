package master

import (
	"context"
	"fmt"
	"time"

	"github.com/hotcluster/hotcluster/internal/procstat"
	"github.com/hotcluster/hotcluster/workers"
)

// formatSize writes bytes as MiB or GiB.
func formatSize(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
}

// The workers' check: a worker is recycled once its RSS was above the
// limit at memoryChecks checks in a row, checkEvery apart.
const (
	checkEvery   = time.Second
	memoryChecks = 3
)

// watchWorkers reads every worker's figures from /proc each checkEvery
// until ctx ends: into cpu, so that status and metrics show the CPU% of
// the last second or so, not of the time since they last asked; and, with
// a limit, to recycle the serving generation's workers whose RSS stays
// above it.
func watchWorkers(ctx context.Context, pool *workers.Pool, cpu *procstat.Sampler, limit uint64) {
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	over := make(map[int]int) // by PID
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := pool.Status(ctx)
		if err != nil {
			return
		}
		replacing := make(map[int]bool)
		for _, w := range st.Workers {
			if w.Replacing {
				replacing[w.Slot] = true
			}
		}
		seen := make(map[int]bool)
		live := make(map[int]bool)
		for _, w := range st.Workers {
			s, err := procstat.Read(w.PID)
			if err != nil {
				continue
			}
			live[w.PID] = true
			cpu.CPUPercent(w.PID, s)
			if limit == 0 || w.Gen != st.Current || w.State != "ready" || w.Replacing || replacing[w.Slot] || s.RSS <= limit {
				continue
			}
			seen[w.PID] = true
			if over[w.PID]++; over[w.PID] >= memoryChecks {
				delete(over, w.PID)
				pool.Recycle(w.Slot, w.PID, fmt.Sprintf("RSS %s above --max-memory %s", formatSize(s.RSS), formatSize(limit)))
			}
		}
		for pid := range over {
			if !seen[pid] {
				delete(over, pid)
			}
		}
		cpu.Forget(func(pid int) bool { return live[pid] })
	}
}
