package master

import (
	"fmt"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/workers"
)

// event hands a pool event to everything that follows the pool: the
// development loop, systemd, the upgrade state, the control socket's event
// streams, the metrics, the memory trimmer, and whoever waits for a
// rebuild's outcome. It is called on the pool's goroutine: none of them
// blocks.
func (m *Master) event(e workers.Event) {
	switch e.Kind {
	case workers.GenStarting:
		m.gen.Store(e.Gen)
	case workers.GenReady:
		// The development loop says more: build time, files changed.
		if m.loop == nil {
			m.log.Info(fmt.Sprintf("gen %d ready in %s (%s)", e.Gen, e.Took.Round(time.Millisecond), workersN(e.Workers)), "gen", e.Gen)
		}
	case workers.GenDone:
		m.trim.poke()
	case workers.WorkerStarted:
		if m.left.keeper != nil && m.socks != nil {
			// What a killed master's keeper looks for in other sessions.
			m.left.keeper.Sockets(m.socks.Inodes(e.Gen, e.Slot))
		}
	}
	if m.loop != nil && e.Kind <= workers.GenDone {
		m.loop.Event(e)
	}
	m.sd.event(e)
	m.publish(e)
	if m.mt != nil {
		m.countEvent(e)
	}
	if e.Kind == workers.GenReady || e.Kind == workers.GenFailed {
		m.outcomes.deliver(e)
	}
}

// publish puts a pool event on the control socket's event streams.
func (m *Master) publish(e workers.Event) {
	ev := control.Event{Time: time.Now(), Event: e.Kind.String(), Generation: e.Gen, PID: e.PID, Took: control.Duration(e.Took), Message: e.Message, Listener: e.Listener}
	switch e.Kind {
	case workers.GenStarting, workers.GenReady, workers.Scaled:
		ev.Workers = e.Workers
	case workers.RolloutBatch, workers.RolloutBack:
		n := e.Replaced
		ev.Workers, ev.Replaced, ev.Error = e.Workers, &n, e.Err
	case workers.WorkerExited, workers.WorkerRespawn:
		ev.Status = e.Err
	case workers.WorkerDraining, workers.WorkerRecycle, workers.WorkerHung, workers.WorkerErrored:
		ev.Reason = e.Err
	default:
		ev.Error = e.Err
	}
	if e.Kind >= workers.WorkerStarted && e.Kind != workers.Scaled && e.Kind != workers.GenErrored && e.Kind != workers.RolloutBatch && e.Kind != workers.RolloutBack {
		slot := e.Slot
		ev.Slot = &slot
	}
	if e.Kind == workers.WorkerMessage {
		m.log.Debug(fmt.Sprintf("gen %d worker %d (pid %d): message %.200s", e.Gen, e.Slot, e.PID, e.Message), "gen", e.Gen, "slot", e.Slot, "pid", e.PID)
	}
	m.hub.Publish(ev)
}

// built publishes the end of a development build (build-done or
// build-failed); the development loop calls it from its goroutine. A
// failed build is the outcome of the reloads waiting for it.
func (m *Master) built(took time.Duration, err error) {
	ev := control.Event{Time: time.Now(), Event: "build-done", Took: control.Duration(took)}
	if err != nil {
		ev.Event, ev.Error = "build-failed", err.Error()
		m.outcomes.deliver(workers.Event{Kind: workers.GenFailed, Err: "build failed: " + err.Error() + " (the output is in the master's log)", Took: took})
	}
	m.hub.Publish(ev)
}

// outcomes are the reloads of development mode waiting for the end of the
// next build: its failure, or its generation's GenReady or GenFailed.
type outcomes struct {
	mu      sync.Mutex
	waiting []chan workers.Event
}

// wait registers a waiter; the channel gets one outcome.
func (o *outcomes) wait() chan workers.Event {
	c := make(chan workers.Event, 1)
	o.mu.Lock()
	o.waiting = append(o.waiting, c)
	o.mu.Unlock()
	return c
}

// forget drops a waiter that stopped waiting.
func (o *outcomes) forget(c chan workers.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, w := range o.waiting {
		if w == c {
			o.waiting = append(o.waiting[:i], o.waiting[i+1:]...)
			return
		}
	}
}

func (o *outcomes) deliver(e workers.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.waiting {
		c <- e // buffered: one each
	}
	o.waiting = nil
}

func workersN(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}
