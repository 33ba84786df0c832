package master

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/handoff"
	"github.com/hotcluster/hotcluster/internal/logring"
	"github.com/hotcluster/hotcluster/internal/logs"
	"github.com/hotcluster/hotcluster/internal/procstat"
	"github.com/hotcluster/hotcluster/upgrade"
	"github.com/hotcluster/hotcluster/workers"
)

// handle answers one request on the control socket (see package control).
func (m *Master) handle(ctx context.Context, req control.Request, r *control.Replier) {
	switch req.Cmd {
	case control.CmdStatus:
		st, err := m.status(ctx)
		if err != nil {
			r.Fail(err)
			return
		}
		r.OK(st)
	case control.CmdReload:
		e, err := m.reloadWait(ctx)
		if err != nil {
			r.Fail(err)
			return
		}
		switch {
		case e.Kind == workers.GenReady:
			r.OK(control.Reload{Generation: e.Gen, OK: true, Took: control.Duration(e.Took)})
		case e.Gen == 0:
			r.Fail(fmt.Errorf("reload failed: %s", e.Err))
		default:
			r.Fail(fmt.Errorf("reload failed: gen %d: %s", e.Gen, e.Err))
		}
	case control.CmdUpgrade:
		if err := m.upgradeRefused(); err != nil {
			r.Fail(err)
			return
		}
		pid, err := m.coord.RequestWait(ctx)
		if err != nil {
			r.Fail(fmt.Errorf("upgrade failed: %s; this master (pid %d) keeps serving", upgrade.Reason(err), os.Getpid()))
			return
		}
		r.OK(control.Upgraded{PID: pid})
	case control.CmdScale:
		n, relative, _ := control.ParseScale(req.Scale)
		size, err := m.pool.ScaleTo(ctx, n, relative)
		if err != nil {
			r.Fail(err)
			return
		}
		r.OK(control.Scaled{Size: size})
	case control.CmdStop:
		m.stop(req.Force)
		if r.OK(nil) != nil {
			return
		}
		// The client learns that the master has stopped when the
		// connection closes, as the master exits.
		select {
		case <-ctx.Done():
		case <-r.Stopping():
		}
	case control.CmdSend:
		to := workers.Target{Slot: -1}
		if req.Slot != nil {
			to.Slot = *req.Slot
		}
		n, err := m.pool.Send(ctx, to, req.Message)
		if err != nil && n == 0 {
			r.Fail(err)
			return
		}
		if err != nil {
			m.log.Warn(fmt.Sprintf("send: %v", err))
		}
		r.OK(control.Sent{Delivered: n})
	case control.CmdLogs:
		m.serveLogs(ctx, req, r)
	case control.CmdEvents:
		control.ServeEvents(ctx, r, &m.hub, func() control.Event {
			hello := control.Event{Time: time.Now(), Event: "connected", PID: os.Getpid()}
			if st, err := m.pool.Status(ctx); err == nil {
				hello.Generation, hello.Workers = st.Current, st.Size
			}
			return hello
		})
	default:
		r.Fail(fmt.Errorf("%s: not supported by this master", req.Cmd))
	}
}

// reloadWait is `hotcluster reload`: the outcome of the generation that
// carries it. In development mode a reload is a build, then a generation.
func (m *Master) reloadWait(ctx context.Context) (workers.Event, error) {
	if m.loop != nil {
		return m.rebuild(ctx)
	}
	u, err := m.reload.update()
	if err != nil {
		return m.refused(err), nil
	}
	return m.pool.ReloadWait(ctx, u)
}

// rebuild triggers a build and returns the outcome of the first build to
// end after it asked: its failure, or its generation's.
func (m *Master) rebuild(ctx context.Context) (workers.Event, error) {
	c := m.outcomes.wait()
	m.loop.Trigger()
	select {
	case e := <-c:
		return e, nil
	case <-ctx.Done():
		m.outcomes.forget(c)
		return workers.Event{}, ctx.Err()
	case <-m.pool.Done():
		m.outcomes.forget(c)
		return workers.Event{}, errors.New("reload: the master is stopping")
	}
}

// status gathers the pool's snapshot and each worker's figures from /proc.
func (m *Master) status(ctx context.Context) (control.Status, error) {
	ps, err := m.pool.Status(ctx)
	if err != nil {
		return control.Status{}, err
	}
	now := time.Now()
	st := control.Status{
		Name: m.cfg.Name, PID: os.Getpid(), Version: m.cfg.Version, Started: m.started, Uptime: control.Duration(now.Sub(m.started)),
		State: ps.State, Generation: ps.Current, Pending: ps.Pending, Size: ps.Size, Stopping: ps.Stopping, Command: ps.Command.Args,
		Listeners: []control.Listener{}, Workers: []control.Worker{}, ForeignSockets: []control.ForeignSocket{},
		LogDropped: m.logs.Dropped(), Log: m.logStatus(),
	}
	if m.socks != nil {
		for _, l := range m.socks.Listeners() {
			st.Listeners = append(st.Listeners, control.Listener{Name: l.Spec.Name, Addr: l.Addr, Mode: l.Mode.String(), Selector: l.Selector, PerSlot: l.PerSlot, Sticky: l.Sticky})
		}
		for _, f := range m.socks.Foreign() {
			st.ForeignSockets = append(st.ForeignSockets, control.ForeignSocket{Listener: f.Listener, Addr: f.Addr,
				Joined: f.Joined, TakesConnections: f.TakesConnections, Owners: foreignOwners(f), Since: f.Since})
		}
	}
	if m.rescue != nil {
		r := m.rescue.Status()
		st.Rescue = &control.Rescue{Relays: r.Relays, Queued: r.Queued, Reset: r.Reset, Held: r.Held, KeepAlive: r.Relayed,
			Redialed: r.Redialed, Closed: r.Closed, Adopted: r.Adopted, Disabled: r.Disabled}
	}
	if e := ps.LastReload; e != nil {
		st.LastReload = &control.Reload{Generation: e.Gen, OK: e.Kind == workers.GenReady, Error: e.Err, Took: control.Duration(e.Took)}
	}
	if ps.NextCommand != nil {
		st.NextCommand = ps.NextCommand.Args
	}
	if r := ps.Rollout; r != nil {
		st.Rollout = &control.Rollout{Progress: r.String(), Generation: r.Gen, From: r.From, Batch: r.Batch, Replaced: r.Replaced,
			Size: r.Size, Back: r.Back, Error: r.Why, Slots: r.Slots, Moving: r.Moving}
	}
	for _, e := range ps.Errored {
		st.Errored = append(st.Errored, control.ErroredSlot{Slot: e.Slot, Why: e.Why, Since: e.Since,
			Generation: e.Gen, PID: e.PID, Exit: e.Exit, Restarts: e.Restarts})
	}
	for _, r := range ps.Restarting {
		st.Restarting = append(st.Restarting, control.RestartingSlot{Slot: r.Slot, Generation: r.Gen, PID: r.PID, Exit: r.Exit,
			ExitedAt: r.ExitedAt, RespawnIn: control.Duration(max(r.RespawnAt.Sub(now), 0)), Restarts: r.Restarts, Crashes: r.Crashes, CrashLoop: r.CrashLoop})
	}
	for _, w := range ps.Workers {
		cw := control.Worker{
			Slot: w.Slot, Generation: w.Gen, PID: w.PID, State: w.State, Replacing: w.Replacing,
			Uptime: control.Duration(now.Sub(w.Started)), Restarts: w.Restarts, PreviousExit: w.PrevExit,
		}
		if !w.PrevExitAt.IsZero() {
			at := w.PrevExitAt
			cw.PreviousExitAt = &at
		}
		if s, err := procstat.Read(w.PID); err == nil {
			cw.RSS = s.RSS
			cw.CPUPercent = m.cpu.CPUPercent(w.PID, s)
			if s.Stopped && cw.State == "ready" {
				cw.State = "stopped"
			}
		}
		st.Workers = append(st.Workers, cw)
	}
	return st, nil
}

// foreignOwners describes who holds a foreign socket, for status.
func foreignOwners(f handoff.Foreign) []control.SocketOwner {
	out := []control.SocketOwner{}
	for _, o := range f.Owners {
		out = append(out, control.SocketOwner{PID: o.PID, Command: o.Command})
	}
	return out
}

// logStatus says what the log's outputs and buffer have done.
func (m *Master) logStatus() *control.LogStatus {
	ls := &control.LogStatus{Outputs: []control.LogOutput{}}
	for _, o := range m.logs.Outputs() {
		lo := control.LogOutput{Name: o.Name, Dropped: o.Dropped}
		if o.Err != nil {
			lo.Error = o.Err.Error()
		}
		ls.Outputs = append(ls.Outputs, lo)
	}
	if ring := m.logs.Ring(); ring != nil {
		ls.BufferLines, ls.BufferBytes = ring.Usage()
		lim := ring.Limits()
		ls.BufferMaxLines, ls.BufferMaxBytes = lim.MaxLines, lim.MaxBytes
	}
	return ls
}

// logsChunk bounds the bytes of lines encoded for one write to a client.
const logsChunk = 256 << 10

// serveLogs answers `hotcluster logs`: the last lines the request selects
// from the ring, then with Follow each new one until the client goes or
// the control socket stops (at a hand-over the client goes on with the
// new master). A client that falls behind loses lines, and a line says
// how many; the ring never waits for it.
func (m *Master) serveLogs(ctx context.Context, req control.Request, r *control.Replier) {
	ring := m.logs.Ring()
	if ring == nil {
		r.Fail(errors.New("logs: this master keeps no lines (--log-buffer 0); see its log file or the journal"))
		return
	}
	f := logring.Filter{Slot: req.Slot, Gen: req.Generation}
	if req.Since != nil {
		f.Since = *req.Since
	}
	var last []logring.Line
	var fl *logring.Follower
	if req.Follow {
		last, fl = ring.Follow(f, req.Lines)
		defer fl.Close()
	} else {
		last = ring.Last(f, req.Lines)
	}
	if r.OK(control.LogsStarted{PID: os.Getpid()}) != nil || sendLines(r, last, 0) != nil || fl == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.Stopping():
			return
		case <-fl.Wake():
			lines, dropped := fl.Take()
			if sendLines(r, lines, dropped) != nil {
				return
			}
		}
	}
}

// sendLines writes a notice of dropped lines, if any, then lines, as JSON
// lines with their sequence numbers.
func sendLines(r *control.Replier, lines []logring.Line, dropped uint64) error {
	var buf []byte
	if dropped > 0 {
		buf = fmt.Appendf(buf, "{\"dropped\":%d}\n", dropped)
	}
	for i := range lines {
		rec := logs.RecordOf(&lines[i])
		buf = logs.AppendJSON(buf, &rec)
		buf = fmt.Appendf(buf[:len(buf)-1], ",\"seq\":%d}\n", lines[i].Seq)
		if len(buf) >= logsChunk {
			if err := r.StreamLines(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if len(buf) == 0 {
		return nil
	}
	return r.StreamLines(buf)
}
