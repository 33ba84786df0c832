package workers

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/protocol"
)

// This file holds what keeps the pool from calling a generation serving
// while nothing serves: the check that a ready worker still holds its
// sockets, slots given up after too many restarts, and the watchdog.

// erroredSlot is a slot of the serving generation given up after too many
// restarts.
type erroredSlot struct {
	why   string
	since time.Time
	// The worker that was the last straw: its generation, PID, exit and
	// the respawns before it.
	gen      uint64
	pid      int
	exit     string
	restarts int
}

// notHolding says why worker w, about to count as ready, cannot serve:
// neither it nor any process it started holds any of its listening
// sockets. "" when it holds one, or when /proc cannot tell.
func (p *Pool) notHolding(w *worker) string {
	if p.cfg.Sockets == nil {
		return ""
	}
	inodes := p.cfg.Sockets.Inodes(w.gen, w.slot)
	held, ok := w.proc.holds(inodes)
	if !ok {
		if !p.unreadable && !w.proc.gone() {
			p.unreadable = true
			p.logf(slog.LevelWarn, w, "cannot read /proc/%d/fd: not checking that workers hold their sockets", w.pid)
		}
		return ""
	}
	if slices.Contains(held, true) {
		return ""
	}
	names := p.cfg.Sockets.Describe()
	var fds []string
	for i := range inodes {
		fds = append(fds, fmt.Sprintf("%d", protocol.ListenFdsStart+i))
	}
	return fmt.Sprintf("worker %d (pid %d) does not hold %s: it closed fd %s, perhaps to bind the port itself; see docs/workers.md",
		w.slot, w.pid, strings.Join(names, ", "), strings.Join(fds, ", "))
}

// notServing handles a worker that would have been ready but does not
// hold its sockets: its generation fails, or, for a standby, the worker it
// was to replace keeps its slot.
func (p *Pool) notServing(w *worker, why string) {
	g := p.gens[w.gen]
	if g == nil {
		return
	}
	if g.standby[w.slot] == w {
		p.logf(slog.LevelWarn, w, "the replacement for worker %d of gen %d: %s; the worker keeps serving", w.slot, g.num, why)
		p.dropStandby(w)
		p.standbyFailed(g, w.slot)
		return
	}
	p.failGeneration(g, why)
}

// restarted records a respawn of slot and says whether the slot has used
// up its restarts: MaxRestarts of them within RestartWindow, before this
// one.
func (p *Pool) restarted(slot int, now time.Time) (exhausted bool, recent int) {
	log := p.restartLog[slot]
	i := 0
	for i < len(log) && now.Sub(log[i]) >= p.cfg.RestartWindow {
		i++
	}
	log = log[i:]
	if p.cfg.MaxRestarts >= 0 && len(log) >= p.cfg.MaxRestarts {
		p.restartLog[slot] = log
		return true, len(log)
	}
	p.restartLog[slot] = append(log, now)
	return false, len(log) + 1
}

// giveUp leaves slot of g empty until the next generation, and reports
// the instance errored once no worker of g is left.
func (p *Pool) giveUp(g *generation, w *worker, how string, recent int) {
	why := fmt.Sprintf("%d restarts within %s, then %s", recent, p.cfg.RestartWindow, how)
	p.errored[w.slot] = erroredSlot{why: why, since: time.Now(), gen: g.num, pid: w.pid, exit: how, restarts: w.restarts}
	p.logf(slog.LevelError, w, "%s exited: %s; given up after %d restarts within %s (--max-restarts %d --restart-window %s): the slot stays empty until the next reload%s",
		w, how, recent, p.cfg.RestartWindow, p.cfg.MaxRestarts, p.cfg.RestartWindow, w.tail.String())
	p.emit(Event{Kind: WorkerErrored, Gen: g.num, Slot: w.slot, PID: w.pid, Err: why})
	if p.erroredNow() {
		p.genf(slog.LevelError, g.num, "errored: no worker of gen %d is left; the sockets stay open and connections wait for the next reload (hotcluster reload, SIGHUP)", g.num)
		p.emit(Event{Kind: GenErrored, Gen: g.num, Err: why})
	}
}

// erroredNow reports whether every slot of the serving generation was
// given up: no worker is left, and none is waiting to be respawned.
func (p *Pool) erroredNow() bool {
	g := p.current
	if g == nil || len(g.workers) > 0 || len(g.standby) > 0 {
		return false
	}
	for slot := 0; slot < p.size; slot++ {
		if _, given := p.errored[slot]; !given {
			return false
		}
	}
	return true
}

type (
	watchdogEvent  struct{ w *worker }
	abortEvent     struct{ w *worker }
	holdCheckEvent struct{ g *generation }
)

// handle checks, a moment after g began to serve, that each of its workers
// still holds a socket. One that does not never gets a connection: in the
// first generation that is a failed start; later it is killed, and its
// slot respawned (and given up if it keeps doing so).
func (e holdCheckEvent) handle(p *Pool) {
	g := e.g
	if g != p.current || g.state != genServing || p.stopping {
		return
	}
	for _, slot := range sortedSlots(g.workers) {
		w := g.workers[slot]
		if w.state != ready {
			continue
		}
		why := p.notHolding(w)
		if why == "" {
			continue
		}
		if g.first && p.cfg.FirstGeneration <= 1 && !p.cfg.KeepGoing {
			p.fatal = &FirstGenerationError{Gen: g.num, Reason: why}
			p.genf(slog.LevelError, g.num, "gen %d failed: %s", g.num, why)
			p.stop(true)
			return
		}
		p.logf(slog.LevelError, w, "gen %d: %s; killing it", g.num, why)
		w.signal(syscall.SIGKILL)
	}
}

// becameServing notes that w serves from now on, and arms its watchdog.
func (p *Pool) becameServing(w *worker) {
	w.readyAt = time.Now()
	w.pinged = w.readyAt
	if d := p.cfg.Watchdog; d > 0 {
		w.watchdog = p.after(d, watchdogEvent{w})
	}
}

// watchdogFired checks w's deadline: a WATCHDOG=1 since the timer was set
// moves it on; none means w hangs.
func (p *Pool) watchdogFired(w *worker) {
	if !p.alive(w) || w.state != ready || w.hung {
		return
	}
	if left := p.cfg.Watchdog - time.Since(w.pinged); left > 0 {
		w.watchdog = p.after(left, watchdogEvent{w})
		return
	}
	p.hangs(w, fmt.Sprintf("sent no WATCHDOG=1 for %s (--watchdog)", p.cfg.Watchdog))
}

// hangs replaces a hung worker: a standby starts in its slot and, once it
// is ready, the hung worker is aborted (see drainWorker). A worker that is
// not in a serving generation's slot is aborted at once.
func (p *Pool) hangs(w *worker, why string) {
	w.hung = true
	p.emit(Event{Kind: WorkerHung, Gen: w.gen, Slot: w.slot, PID: w.pid, Err: why})
	g := p.gens[w.gen]
	if p.stopping || g == nil || g != p.current || g.state != genServing || g.workers[w.slot] != w {
		p.logf(slog.LevelError, w, "%s %s: hung; aborting it", w, why)
		p.abort(w)
		return
	}
	if !p.replace(g, w, "hung: "+why) {
		p.abort(w)
	}
}

// abort asks a hung worker to dump its state and exit (SIGABRT; SIGCONT
// first, so that a stopped one can), and kills it hungKillAfter later.
func (p *Pool) abort(w *worker) {
	w.signal(syscall.SIGCONT)
	w.signal(syscall.SIGABRT)
	if w.drain != nil {
		w.drain.Stop()
	}
	w.drain = p.after(hungKillAfter, abortEvent{w})
}

// standbyFailed is called when the standby for slot of g did not become
// ready: a hung worker it was to replace is aborted all the same (its slot
// is then respawned as after a crash); any other keeps serving.
func (p *Pool) standbyFailed(g *generation, slot int) {
	p.rollStandbyFailed(g, slot)
	if old := g.workers[slot]; old != nil && old.hung && old.state == ready {
		p.logf(slog.LevelError, old, "%s is hung and its replacement failed: aborting it; its slot is respawned", old)
		p.abort(old)
	}
}
