package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// rssOutcome is the workers' memory across one reload with a --rollout.
type rssOutcome struct {
	rollout      string
	err, stopErr error
	// before is the workers' summed RSS (KiB) while one generation
	// serves; peak the most during the reload, with the most workers
	// alive at once (peakN); took is from SIGHUP until every old worker
	// had exited; samples counts the looks at /proc.
	before, peak int64
	peakN        int
	took         time.Duration
	samples      int
}

// rssEvery is how often runRSS sums the workers' RSS.
const rssEvery = 5 * time.Millisecond

// runRSS starts hotcluster with b.workers hellos of -ballast MiB each and
// --rollout rollout, sends one SIGHUP, and sums the RSS of the master's
// hello children (VmRSS from /proc) every rssEvery until every worker of
// the first generation has exited and b.workers are alive.
func (b *bench) runRSS(rollout string) (o *rssOutcome) {
	o = &rssOutcome{rollout: rollout}
	var flags []string
	if rollout != "all" && rollout != "" {
		flags = []string{"--rollout", rollout}
	}
	s, err := b.startWarm(fmt.Sprintf("rss-%d", len(b.servers)+1), flags, []string{"-ballast", strconv.Itoa(b.ballast)})
	if s != nil {
		defer func() { o.stopErr = s.stop(b.stopGrace, b.hello) }()
	}
	if err != nil {
		o.err = err
		return o
	}
	master := s.master.PID()
	first := map[int]bool{}
	for _, pid := range b.helloChildren(master) {
		first[pid] = true
	}
	if len(first) != b.workers {
		o.err = fmt.Errorf("%d hello workers before the reload, want %d", len(first), b.workers)
		return o
	}
	// The steady state: the most over a short look.
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		sum, _ := b.workersRSS(master)
		o.before = max(o.before, sum)
		if err := sleep(b.ctx, rssEvery); err != nil {
			o.err = err
			return o
		}
	}
	if err := hup(master); err != nil {
		o.err = err
		return o
	}
	t0 := time.Now()
	deadline := t0.Add(4 * b.readyTimeout)
	for {
		sum, pids := b.workersRSS(master)
		o.samples++
		o.peak, o.peakN = max(o.peak, sum), max(o.peakN, len(pids))
		old := 0
		for _, pid := range pids {
			if first[pid] {
				old++
			}
		}
		if old == 0 && len(pids) == b.workers {
			o.took = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			o.err = fmt.Errorf("the reload did not end within %v: %d workers, %d of them old", deadline.Sub(t0), len(pids), old)
			return o
		}
		if err := sleep(b.ctx, rssEvery); err != nil {
			o.err = err
			return o
		}
	}
	o.err = s.alive()
	return o
}

// helloChildren lists the master's children that run b.hello (its workers;
// not the keeper, nor a shim that has not exec'd yet).
func (b *bench) helloChildren(master int) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(master) + "/task/*/children")
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for field := range bytes.FieldsSeq(data) {
			if pid, err := strconv.Atoi(string(field)); err == nil && runs(pid, b.hello) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// workersRSS sums VmRSS (KiB) of the master's hello children.
func (b *bench) workersRSS(master int) (int64, []int) {
	pids := b.helloChildren(master)
	var sum int64
	for _, pid := range pids {
		if kib, err := rssKiB(pid); err == nil {
			sum += kib
		}
	}
	return sum, pids
}

func (r *report) rssSection(p func(string, ...any)) {
	b := r.bench
	p("\n## Workers' memory during a reload\n\n")
	p("hotcluster runs %d workers of `hello -ballast %d` (each allocates and touches %d MiB); the driver sends one SIGHUP and sums the VmRSS of the master's hello children from /proc every %v until every old worker has exited. *Before* is that sum while one generation serves; *peak* the most during the reload.\n\n", b.workers, b.ballast, b.ballast, rssEvery)
	p("| --rollout | before | peak | peak / before | most workers at once | reload took | samples |\n")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, o := range r.rss {
		if o.err != nil && o.peak == 0 {
			p("| %s | error: %s | | | | | |\n", o.rollout, cell(o.err))
			continue
		}
		p("| %s | %.0f MiB | %.0f MiB | %s | %d | %s | %d |\n", o.rollout, float64(o.before)/1024, float64(o.peak)/1024,
			ratio(float64(o.peak), float64(o.before)), o.peakN, ms(o.took), o.samples)
	}
}
