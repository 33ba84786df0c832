package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/control"
	"github.com/hotcluster/hotcluster/handoff"
	"github.com/hotcluster/hotcluster/internal/logsink"
	"github.com/hotcluster/hotcluster/internal/procstat"
	"github.com/hotcluster/hotcluster/metrics"
	"github.com/hotcluster/hotcluster/upgrade"
	"github.com/hotcluster/hotcluster/workers"
)

// parseSize reads a memory size: a number of bytes, or with K, M, G or T
// (powers of 1024, as PM2's max_memory_restart; KB, KiB and the like are
// read the same).
func parseSize(s string) (uint64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*mult < 1<<20 || v*mult > 1<<50 {
		return 0, fmt.Errorf("size %q: want a size of 1M or more such as 512M or 1.5G", s)
	}
	return uint64(v * mult), nil
}

// formatSize writes bytes as MiB or GiB.
func formatSize(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
}

// inheritOrListen returns the listener an upgrade passed under name, or
// the one listen makes, and stores it for the next upgrade: the control
// socket and the metrics port survive upgrades without a window.
func inheritOrListen(upg *upgrade.Upgrader, name string, listen func() (net.Listener, error)) (net.Listener, error) {
	f, err := upg.File(name)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if f != nil {
		ln, err = net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s from the previous master: %w", name, err)
		}
	} else if ln, err = listen(); err != nil {
		return nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	sc, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("%s: cannot be passed on", name)
	}
	lf, err := sc.File()
	if err == nil {
		err = upg.AddFile(name, lf)
		lf.Close()
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
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

// serveMetrics serves the Prometheus metrics on ln until ctx ends.
func serveMetrics(ctx context.Context, ln net.Listener, mt *metrics.Metrics, log func(string, ...any), wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := metrics.Serve(ctx, ln, mt.Handler()); err != nil && !errors.Is(err, net.ErrClosed) {
			log("metrics server stopped: %v", err)
		}
	}()
}

// newMetrics makes the metrics of pool's workers, read at scrape time:
// the pool's snapshot, and one reading of /proc per worker; and of the
// foreign sockets on socks' addresses (socks may be nil).
func newMetrics(pool *workers.Pool, socks *handoff.Sockets, sink *logsink.Sink) *metrics.Metrics {
	return metrics.New(func() metrics.Snapshot {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := pool.Status(ctx)
		if err != nil {
			return metrics.Snapshot{LogDropped: sink.Dropped()}
		}
		snap := metrics.Snapshot{Generation: st.Current, LogDropped: sink.Dropped(), ErroredSlots: len(st.Errored)}
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

// metricsEvent counts what the metrics count from the pool's events.
func metricsEvent(mt *metrics.Metrics, e workers.Event, first *bool) {
	switch e.Kind {
	case workers.GenReady:
		if *first {
			*first = false
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

// listenControl is the listen func of the control socket.
func listenControl(path string) func() (net.Listener, error) {
	return func() (net.Listener, error) {
		ln, err := control.Listen(path)
		if errors.Is(err, control.ErrInUse) {
			return nil, &usageError{err}
		}
		if err != nil {
			return nil, usageIfUnsafe(err)
		}
		return ln, nil
	}
}

// metricsFile names the metrics listener among the sockets an upgrade
// passes on.
const metricsFile = "hotcluster-metrics"

// trimmer hands the memory a turnover freed back to the system: each
// generation leaves garbage (its workers' buffers, goroutine stacks) that
// the runtime would otherwise keep mapped for minutes, and the master's
// memory should read the same after a thousand reloads as after one.
type trimmer struct{ c chan struct{} }

func newTrimmer() *trimmer { return &trimmer{c: make(chan struct{}, 1)} }

// poke asks for a trim without waiting: the pool's goroutine calls it.
func (t *trimmer) poke() {
	select {
	case t.c <- struct{}{}:
	default:
	}
}

// run trims after each poke until ctx ends. A forced collection of the
// master's small heap takes about a millisecond, once per generation.
func (t *trimmer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.c:
			debug.FreeOSMemory()
		}
	}
}
