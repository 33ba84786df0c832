package workers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// What the loop allows a worker's message channel.
const (
	// outboxSize bounds the messages queued for one worker.
	outboxSize = 64
	// ipcWriteTimeout bounds one write to a worker that does not read.
	ipcWriteTimeout = time.Second
	// ipcRate and ipcBurst bound the messages a worker may send.
	ipcRate, ipcBurst = 1000, 1000
	// notifyRate and notifyBurst bound the notify datagrams the master
	// reads from one worker; a worker that sends faster waits in sendmsg
	// (or gets EAGAIN) once its socket's queue is full.
	notifyRate, notifyBurst = 1000, 1000
)

// Target names the workers a message goes to.
type Target struct {
	// Gen 0 is the serving generation.
	Gen uint64
	// Slot -1 is every worker of the generation.
	Slot int
}

type message struct {
	to    Target
	value json.RawMessage
	sent  chan<- sendResult
}

type sendResult struct {
	n   int
	err error
}

// Send queues value, one JSON value, for the workers of to and returns how
// many got it. It never waits for a worker: a worker whose queue is full
// (it does not read its channel) is an error.
func (p *Pool) Send(ctx context.Context, to Target, value json.RawMessage) (int, error) {
	if !json.Valid(value) {
		return 0, fmt.Errorf("workers: not a JSON value: %.80q", value)
	}
	c := make(chan sendResult, 1)
	if !p.send(request{kind: reqSend, message: &message{to: to, value: value, sent: c}}) {
		return 0, ErrStopped
	}
	select {
	case r := <-c:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *Pool) deliver(m *message) {
	n, err := p.deliverTo(m.to, m.value)
	m.sent <- sendResult{n, err}
}

func (p *Pool) deliverTo(to Target, value json.RawMessage) (int, error) {
	g := p.current
	if to.Gen != 0 {
		g = p.gens[to.Gen]
	}
	if g == nil && to.Gen == 0 {
		return 0, errors.New("no generation is serving yet")
	}
	if g == nil {
		return 0, fmt.Errorf("no generation %d", to.Gen)
	}
	var ws []*worker
	if to.Slot < 0 {
		for _, slot := range sortedSlots(g.workers) {
			ws = append(ws, g.workers[slot])
		}
	} else if w := g.workers[to.Slot]; w != nil {
		ws = append(ws, w)
	} else {
		return 0, fmt.Errorf("gen %d has no worker %d", g.num, to.Slot)
	}
	line := append(compact(value), '\n')
	n := 0
	var errs []error
	for _, w := range ws {
		if w.outbox == nil {
			errs = append(errs, fmt.Errorf("%s has no message channel (run with --ipc on, or node)", w))
			continue
		}
		select {
		case w.outbox <- line:
			n++
		default:
			errs = append(errs, fmt.Errorf("%s: %d messages queued that it has not read; message dropped", w, outboxSize))
		}
	}
	return n, errors.Join(errs...)
}

// compact makes a JSON value one line.
func compact(v json.RawMessage) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return v
	}
	return b.Bytes()
}

type (
	messageEvent struct {
		w   *worker
		msg ipcMessage
	}
	disconnectEvent struct{ w *worker }
)

// received handles a worker's message: an event, and a broadcast if it
// asked for one.
func (p *Pool) received(e messageEvent) {
	w := e.w
	if !p.alive(w) {
		return
	}
	p.emit(Event{Kind: WorkerMessage, Gen: w.gen, Slot: w.slot, PID: w.pid, Message: e.msg.value})
	if e.msg.broadcast {
		if _, err := p.deliverTo(Target{Gen: w.gen, Slot: -1}, e.msg.value); err != nil {
			p.logf(slog.LevelWarn, w, "%s: broadcast: %v", w, err)
		}
	}
}
