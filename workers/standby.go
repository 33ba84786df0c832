package workers

import (
	"fmt"
	"log/slog"
	"syscall"
)

type recycle struct {
	slot, pid int
	why       string
}

// Recycle replaces the serving generation's worker in slot, if its PID is
// still pid: a replacement starts in the same generation, and the worker
// drains once the replacement is ready (or keeps serving if it never is).
func (p *Pool) Recycle(slot, pid int, why string) {
	p.send(request{kind: reqRecycle, recycle: recycle{slot, pid, why}})
}

func (p *Pool) startRecycle(r recycle) {
	g := p.current
	if p.stopping || g == nil || g.state != genServing || p.roll != nil {
		// During a rollout the slots are the rollout's to replace.
		return
	}
	old := g.workers[r.slot]
	if old == nil || old.pid != r.pid || old.state != ready || g.standby[r.slot] != nil {
		return
	}
	p.replace(g, old, r.why)
}

// replace starts a standby for old, a ready worker of g, the serving
// generation; old drains once the standby is ready. It returns false when
// the standby did not start.
func (p *Pool) replace(g *generation, old *worker, why string) bool {
	if g.standby[old.slot] != nil {
		return true // already being replaced
	}
	w, err := p.startWorker(g, old.slot, true)
	if err != nil {
		p.logf(slog.LevelError, old, "%s: %s, but its replacement did not start: %v", old, why, err)
		return false
	}
	g.standby[old.slot] = w
	p.logf(slog.LevelInfo, old, "%s: %s; replacing it with pid %d", old, why, w.pid)
	p.emit(Event{Kind: WorkerRecycle, Gen: g.num, Slot: old.slot, PID: old.pid, Err: why})
	w.timeout = p.after(p.cfg.ReadyTimeout, standbyTimeoutEvent{w})
	return true
}

type standbyTimeoutEvent struct{ w *worker }

// promote gives w, a ready standby, its slot; the worker it replaces drains.
func (p *Pool) promote(g *generation, w *worker) {
	delete(g.standby, w.slot)
	if w.timeout != nil {
		w.timeout.Stop()
	}
	w.timeout = nil
	old := g.workers[w.slot]
	g.workers[w.slot] = w
	if old != nil {
		g.replaced[old] = true
		p.drainWorker(old, fmt.Sprintf("replaced by pid %d", w.pid))
	}
}

// dropStandby kills a standby that is no longer wanted; it leaves the
// generation when its exit is reported.
func (p *Pool) dropStandby(w *worker) {
	if w.state == draining {
		return
	}
	w.state = draining
	w.stopTimers()
	w.signal(syscall.SIGKILL)
}

func (p *Pool) standbyTimedOut(w *worker) {
	g := p.gens[w.gen]
	if g == nil || g.standby[w.slot] != w || w.state != starting {
		return
	}
	p.logf(slog.LevelWarn, w, "%s, the replacement for worker %d, not ready within --ready-timeout %s; the worker keeps serving%s", w, w.slot, p.cfg.ReadyTimeout, w.tail.String())
	p.dropStandby(w)
	p.standbyFailed(g, w.slot)
}
