package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// footprintOutcome is the master's footprint without load.
type footprintOutcome struct {
	ran          bool
	err, stopErr error
	// rss and hwm are VmRSS and VmHWM (its peak) in KiB; threads is the
	// master's thread count.
	rss, hwm, threads int64
	cpuIdle           float64
}

// runFootprint starts hotcluster with b.workers hellos, waits until it
// serves (with the usual warm-up load), then measures the master's CPU use
// over b.idleFor without load, and its memory.
func (b *bench) runFootprint() (o footprintOutcome) {
	o.ran = true
	s, err := b.startWarm("footprint", nil, nil)
	if s != nil {
		defer func() { o.stopErr = s.stop(b.stopGrace, b.hello) }()
	}
	if err != nil {
		o.err = err
		return o
	}
	master := s.master.PID()
	cpu, err := startCPU(master)
	if err == nil {
		if err = sleep(b.ctx, b.idleFor); err == nil {
			o.cpuIdle, err = cpu.percent()
		}
	}
	if err == nil {
		o.rss, o.hwm, o.threads, err = memory(master)
	}
	if err == nil {
		err = s.alive()
	}
	o.err = err
	return o
}

// memory returns VmRSS and VmHWM in KiB and the thread count of pid, from
// /proc/PID/status.
func memory(pid int) (rss, hwm, threads int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, 0, err
	}
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		case "Threads":
			dst = &threads
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("parse /proc/%d/status %s: %w", pid, k, err)
		}
		*dst = n
		found++
	}
	if found != 3 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/status: VmRSS, VmHWM or Threads missing", pid)
	}
	return rss, hwm, threads, nil
}
