package workers

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventKind names what happened to a generation or a worker.
type EventKind int

// The events reported to Config.OnEvent.
const (
	// GenStarting: the generation's workers are being started.
	GenStarting EventKind = iota + 1
	// GenReady: the generation serves; Took is from its start.
	GenReady
	// GenFailed: the generation never served; Err says why.
	GenFailed
	// GenDone: every worker of the generation has exited.
	GenDone
	// WorkerStarted: a worker process was forked (Slot, PID).
	WorkerStarted
	// WorkerReady: a worker reported ready, or counted as ready.
	WorkerReady
	// WorkerDraining: a worker is sent the stop signal; Err says why. It
	// is emitted on the pool's goroutine just before the signal goes, so
	// that OnEvent can act first (the master's rescue holds the worker's
	// keep-alive connections then).
	WorkerDraining
	// WorkerExited: a worker exited; Err describes its status, Took its
	// lifetime.
	WorkerExited
	// WorkerRespawn: a worker of the serving generation died and its slot
	// is started again (after Took of back-off).
	WorkerRespawn
	// WorkerRecycle: a worker is being replaced (Err says why): its
	// replacement starts, and the worker drains once that is ready.
	WorkerRecycle
	// WorkerDisconnect: a worker's message channel closed.
	WorkerDisconnect
	// WorkerMessage: a worker sent Message on its channel.
	WorkerMessage
	// Scaled: the group's size changed to Workers.
	Scaled
	// WorkerErrored: a serving worker's slot crashed more than
	// Config.MaxRestarts times within Config.RestartWindow and is given up
	// until the next generation; Err says why.
	WorkerErrored
	// WorkerHung: a worker missed its watchdog deadline (Config.Watchdog);
	// it is replaced and aborted.
	WorkerHung
	// GenErrored: no worker of the serving generation is left: every slot
	// was given up. The sockets stay open; a reload starts afresh.
	GenErrored
	// WorkerListening: a worker called listen(2) on the socket of
	// Listener (inherited, or given to its own bind); once it has on
	// every listener it is listening, which ReadyAuto takes as ready for
	// a program that says nothing. Node's cluster names it so.
	WorkerListening
	// RolloutBatch: a rolling reload (--rollout) into Gen started
	// (Replaced 0) or moved a batch: Replaced of its Workers slots are
	// on Gen.
	RolloutBatch
	// RolloutBack: a batch of a rolling reload failed (Err says why) and
	// the replaced slots go back to the old generation, or a batch of
	// them did: Replaced are still on Gen.
	RolloutBack
)

var eventNames = [...]string{
	GenStarting: "reload-start", GenReady: "reload-done", GenFailed: "reload-failed", GenDone: "drained",
	WorkerStarted: "fork", WorkerReady: "ready", WorkerDraining: "draining", WorkerExited: "exit",
	WorkerRespawn: "respawn", WorkerRecycle: "recycle", WorkerDisconnect: "disconnect",
	WorkerMessage: "message", Scaled: "scale", WorkerErrored: "slot-errored", WorkerHung: "hung",
	GenErrored: "errored", WorkerListening: "listening", RolloutBatch: "rollout", RolloutBack: "rollout-back",
}

// String is the event's name on the control socket, after Node's cluster
// events where one matches (fork, listening, disconnect, exit).
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is a change in a generation's or a worker's life.
type Event struct {
	Kind EventKind
	Gen  uint64
	// Command is the generation's command (generation events).
	Command Command
	// Workers is the generation's size (GenStarting, GenReady, Scaled).
	Workers int
	// Slot and PID name the worker of worker events.
	Slot, PID int
	Took      time.Duration
	Err       string
	// Message is a worker's message (WorkerMessage).
	Message json.RawMessage
	// Listener names the listener, e.g. web=127.0.0.1:8080
	// (WorkerListening).
	Listener string
	// Replaced counts the slots a rolling reload has on Gen
	// (RolloutBatch, RolloutBack).
	Replaced int
	// DrainsKeepAlive: the worker said it drains its keep-alive
	// connections itself (WorkerDraining).
	DrainsKeepAlive bool
}

func (p *Pool) emit(e Event) {
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(e)
	}
}
