package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// upgradeOutcome is what one binary-upgrade scenario measured.
type upgradeOutcome struct {
	mode         connMode
	err, stopErr error
	res          *loadgen.Result
	upgrades     int             // SIGUSR2s whose old master was gone afterwards
	exits        []time.Duration // from each SIGUSR2 to the old master's exit
	sent         []time.Time     // each SIGUSR2
	masters      []int           // every master PID, the first one first
	gens         seen
	finalGen     int
}

var (
	tookOver      = regexp.MustCompile(`upgraded: master pid (\d+) took over`)
	upgradeFailed = regexp.MustCompile(`upgrade failed: [^\n]*`)
	parentExited  = regexp.MustCompile(`the previous master has exited`)
)

// runUpgrade runs examples/hello under hotcluster and, under load, sends
// SIGUSR2 to the current master b.upgrades times, one every b.reloadEvery or
// as soon as the previous old master has exited, whichever is later. The new
// master is not the driver's child: its PID comes from the old master's log
// line, and it is stopped by PID (it stays in the process group the driver
// created for the first master).
func (b *bench) runUpgrade(m connMode) (o *upgradeOutcome) {
	o = &upgradeOutcome{mode: m}
	s, err := b.startWarm(fmt.Sprintf("upgrade-%s", m.short()), nil, nil)
	if s != nil {
		o.masters = []int{s.master.PID()}
		defer func() { o.stopErr = b.stopUpgraded(s, o.masters) }()
	}
	if err != nil {
		o.err = err
		return o
	}

	obs := newObserver(b.clients)
	type loadResult struct {
		r   *loadgen.Result
		err error
	}
	loadCtx, stopLoad := context.WithCancel(b.ctx)
	defer stopLoad()
	// A hard bound; the load normally ends b.reloadEvery after the last
	// upgrade, through stopLoad.
	bound := min(time.Hour, time.Duration(b.upgrades+1)*(b.reloadEvery+b.readyTimeout+b.stopGrace))
	loadDone := make(chan loadResult, 1)
	go func() {
		r, err := loadgen.Run(loadCtx, loadgen.Config{
			Addr: s.addr, Clients: b.clients, KeepAlive: m.keepAlive, Sources: b.sources,
			Duration: bound, OnResponse: obs.observe, BucketLatencies: true,
		})
		loadDone <- loadResult{r, err}
	}()
	next := time.Now().Add(b.reloadEvery)
	for i := 1; i <= b.upgrades; i++ {
		if err := sleep(b.ctx, time.Until(next)); err != nil {
			o.err = err
			break
		}
		cur := o.masters[len(o.masters)-1]
		if gone(cur) {
			o.err = fmt.Errorf("master %d is gone before upgrade %d; log %s:\n%s", cur, i, s.master.LogPath, s.master.LogTail(15))
			break
		}
		if err := syscall.Kill(cur, syscall.SIGUSR2); err != nil {
			o.err = fmt.Errorf("SIGUSR2 master %d: %w", cur, err)
			break
		}
		sent := time.Now()
		o.sent = append(o.sent, sent)
		next = sent.Add(b.reloadEvery)
		pid, err := b.waitTakeover(s.master.LogPath, i)
		if err != nil {
			o.err = fmt.Errorf("upgrade %d: %w", i, err)
			break
		}
		o.masters = append(o.masters, pid)
		if err := waitGone(b.ctx, cur, b.stopGrace+b.readyTimeout); err != nil {
			o.err = fmt.Errorf("upgrade %d: old master: %w", i, err)
			break
		}
		o.exits = append(o.exits, time.Since(sent))
		o.upgrades++
		// The new master accepts the next SIGUSR2 once it has seen the old
		// one exit, which it logs.
		if err := b.waitLogCount(s.master.LogPath, parentExited, i); err != nil {
			o.err = fmt.Errorf("upgrade %d: %w", i, err)
			break
		}
		if i == 1 {
			// The first master is the driver's child: it must have exited 0.
			<-s.master.Done // reaped by now (gone treats a zombie as gone)
			s.master.Stopped = true
			if s.master.WaitErr != nil {
				o.err = fmt.Errorf("first master (pid %d): %s", cur, describeExit(s.master.WaitErr))
				break
			}
		}
	}
	if o.err == nil {
		// Let the last turnover show in the load before it ends.
		_ = sleep(b.ctx, b.reloadEvery)
	}
	stopLoad()
	lr := <-loadDone // bounded by stopLoad
	if lr.err != nil {
		o.err = errors.Join(o.err, lr.err)
		return o
	}
	o.res = lr.r
	o.gens = obs.merge()
	maps.Copy(s.pids, o.gens.pids)
	if cur := o.masters[len(o.masters)-1]; gone(cur) {
		o.err = errors.Join(o.err, fmt.Errorf("master %d is gone after the load", cur))
		return o
	}
	probe := newObserver(1)
	if r, err := loadgen.Run(b.ctx, loadgen.Config{Addr: s.addr, MaxRequests: 1, Timeout: 2 * time.Second, OnResponse: probe.observe}); err == nil && r.Failures == 0 {
		pr := probe.merge()
		o.finalGen = pr.maxGen
		maps.Copy(s.pids, pr.pids)
	}
	return o
}

// waitLogCount waits, up to b.readyTimeout, until the master log holds n
// lines matching re.
func (b *bench) waitLogCount(logPath string, re *regexp.Regexp, n int) error {
	deadline := time.Now().Add(b.readyTimeout)
	for {
		text, err := os.ReadFile(logPath)
		if err != nil {
			return err
		}
		if len(re.FindAll(text, -1)) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q line %d within %v; log %s", re, n, b.readyTimeout, logPath)
		}
		if err := sleep(b.ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitTakeover waits, up to b.readyTimeout, until the master log holds the
// n-th "upgraded: master pid N took over" line, and returns N.
func (b *bench) waitTakeover(logPath string, n int) (int, error) {
	deadline := time.Now().Add(b.readyTimeout)
	for {
		text, err := os.ReadFile(logPath)
		if err != nil {
			return 0, err
		}
		if ms := tookOver.FindAllSubmatch(text, -1); len(ms) >= n {
			return strconv.Atoi(string(ms[n-1][1]))
		}
		if f := upgradeFailed.FindAll(text, -1); len(f) > 0 {
			return 0, fmt.Errorf("master logged %q", f[len(f)-1])
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no new master took over within %v; log %s", b.readyTimeout, logPath)
		}
		if err := sleep(b.ctx, 10*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// gone reports whether pid no longer runs: kill(pid, 0) fails with ESRCH,
// or the process is a zombie waiting for its parent.
func gone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// waitGone polls gone(pid) every 10ms, up to wait.
func waitGone(ctx context.Context, pid int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for !gone(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still running after %v", pid, wait)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// stopUpgraded stops every master of s still running (normally only the last
// one) with SIGTERM, waits up to b.stopGrace for each, then SIGKILLs the
// process group the driver created for the first master, which every later
// master inherited, if any of them is still there. Then no worker seen
// answering may outlive them.
func (b *bench) stopUpgraded(s *server, masters []int) error {
	first := s.master
	// Every master the log names, also one the scenario gave up waiting for.
	if text, err := os.ReadFile(first.LogPath); err == nil {
		for _, m := range tookOver.FindAllSubmatch(text, -1) {
			if pid, err := strconv.Atoi(string(m[1])); err == nil && !slices.Contains(masters, pid) {
				masters = append(masters, pid)
			}
		}
	}
	if len(masters) <= 1 {
		return s.stop(b.stopGrace, b.hello) // never upgraded: the usual way
	}
	var errs []error
	if !first.Stopped {
		if first.Exited() == nil {
			errs = append(errs, first.Stop(b.stopGrace))
		} else if first.Stopped = true; first.WaitErr != nil {
			errs = append(errs, fmt.Errorf("first master (pid %d): %s", first.PID(), describeExit(first.WaitErr)))
		}
	}
	var live []int
	for _, pid := range masters[1:] {
		// Only in the group the driver made: a recycled PID is left alone.
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == first.PID() && !gone(pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			live = append(live, pid)
		}
	}
	if last := masters[len(masters)-1]; !slices.Contains(live, last) {
		errs = append(errs, fmt.Errorf("%s: last master %d had already exited", s.name, last))
	}
	killed := false
	for _, pid := range live {
		// A fresh context: stopping must not be cut short by Ctrl-C.
		if err := waitGone(context.Background(), pid, b.stopGrace); err != nil {
			if !killed {
				_ = syscall.Kill(-first.PID(), syscall.SIGKILL)
				killed = true
			}
			errs = append(errs, fmt.Errorf("%s: master %d did not exit within %v of SIGTERM; killed process group %d", s.name, pid, b.stopGrace, first.PID()))
			if err := waitGone(context.Background(), pid, killWait); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, reapLeftovers(s.pids, b.hello, killWait))
	return errors.Join(errs...)
}
