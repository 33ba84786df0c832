package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/control"
	"github.com/hotcluster/hotcluster/devloop"
	"github.com/hotcluster/hotcluster/handoff"
	"github.com/hotcluster/hotcluster/internal/logsink"
	"github.com/hotcluster/hotcluster/internal/procstat"
	"github.com/hotcluster/hotcluster/workers"
)

// controlFile is the name of the control socket among the sockets an
// upgrade passes to the new master.
const controlFile = "hotcluster-control"

// defaultName names an instance after its program: the command's base
// name, or for an interpreter (node server.js) the script's.
func defaultName(argv []string) string {
	if len(argv) == 0 || strings.Contains(argv[0], devloop.Placeholder) {
		if wd, err := os.Getwd(); err == nil {
			return control.NameFrom(filepath.Base(wd))
		}
		return "hotcluster"
	}
	base := filepath.Base(argv[0])
	switch strings.TrimRight(base, "0123456789.") {
	case "node", "nodejs", "bun", "deno", "python", "ruby", "php", "perl":
		for _, a := range argv[1:] {
			if !strings.HasPrefix(a, "-") {
				return control.NameFrom(strings.TrimSuffix(filepath.Base(a), filepath.Ext(a)))
			}
		}
	}
	return control.NameFrom(base)
}

// controlPath is the socket an instance serves: --control, or its name's
// in the default directory.
func controlPath(name, path string) string {
	if path != "" {
		return path
	}
	return control.SocketPath(control.DefaultDir(), name)
}

// instance answers the control socket for one running instance.
type instance struct {
	name    string
	pool    *workers.Pool
	socks   *handoff.Sockets
	loop    *devloop.Loop // nil in production
	bu      *binaryUpgrade
	hub     control.Hub
	log     *log.Logger
	cpu     procstat.Sampler
	sink    *logsink.Sink // the master's output
	debug   bool          // log the workers' messages
	reload  func(ctx context.Context) (workers.Event, error)
	stop    func(force bool)
	started time.Time
}

// event publishes a pool event on the event streams; called from the
// pool's goroutine, it never blocks.
func (m *instance) event(e workers.Event) {
	ev := control.Event{Time: time.Now(), Event: e.Kind.String(), Generation: e.Gen, PID: e.PID, Took: control.Duration(e.Took), Message: e.Message}
	switch e.Kind {
	case workers.GenStarting, workers.GenReady, workers.Scaled:
		ev.Workers = e.Workers
	case workers.WorkerExited, workers.WorkerRespawn:
		ev.Status = e.Err
	case workers.WorkerDraining, workers.WorkerRecycle, workers.WorkerHung, workers.WorkerErrored:
		ev.Reason = e.Err
	default:
		ev.Error = e.Err
	}
	if e.Kind >= workers.WorkerStarted && e.Kind != workers.Scaled {
		slot := e.Slot
		ev.Slot = &slot
	}
	if e.Kind == workers.WorkerMessage && m.debug {
		m.log.Printf("gen %d worker %d (pid %d): message %.200s", e.Gen, e.Slot, e.PID, e.Message)
	}
	m.hub.Publish(ev)
}

// built publishes the end of a development build (build-done or
// build-failed); the dev loop calls it from its goroutine.
func (m *instance) built(took time.Duration, err error) {
	ev := control.Event{Time: time.Now(), Event: "build-done", Took: control.Duration(took)}
	if err != nil {
		ev.Event, ev.Error = "build-failed", err.Error()
	}
	m.hub.Publish(ev)
}

// rebuild is a reload in development mode: a build, then a generation. It
// returns the outcome of the first build to end after it asked, or of the
// generation that build started.
func (m *instance) rebuild(ctx context.Context) (workers.Event, error) {
	c, cancel := m.hub.Subscribe()
	defer cancel()
	m.loop.Trigger()
	for {
		select {
		case <-ctx.Done():
			return workers.Event{}, ctx.Err()
		case b, ok := <-c:
			if !ok {
				return workers.Event{}, errors.New("reload: too many events to follow the rebuild; see hotcluster events")
			}
			var ev control.Event
			if json.Unmarshal(b, &ev) != nil {
				continue
			}
			switch ev.Event {
			case "build-failed":
				return workers.Event{Kind: workers.GenFailed, Err: "build failed: " + ev.Error + " (the output is in the master's log)", Took: ev.Took.D()}, nil
			case "reload-done":
				return workers.Event{Kind: workers.GenReady, Gen: ev.Generation, Took: ev.Took.D()}, nil
			case "reload-failed":
				return workers.Event{Kind: workers.GenFailed, Gen: ev.Generation, Err: ev.Error, Took: ev.Took.D()}, nil
			}
		}
	}
}

// publish sends an event of the master's own (upgrade).
func (m *instance) publish(name string, pid int, errMsg string) {
	m.hub.Publish(control.Event{Time: time.Now(), Event: name, PID: pid, Error: errMsg})
}

func (m *instance) handle(ctx context.Context, req control.Request, r *control.Replier) {
	switch req.Cmd {
	case control.CmdStatus:
		st, err := m.status(ctx)
		if err != nil {
			r.Fail(err)
			return
		}
		r.OK(st)
	case control.CmdReload:
		e, err := m.reload(ctx)
		if err != nil {
			r.Fail(err)
			return
		}
		res := control.Reload{Generation: e.Gen, OK: e.Kind == workers.GenReady, Error: e.Err, Took: control.Duration(e.Took)}
		if !res.OK && e.Gen == 0 {
			r.Fail(fmt.Errorf("reload failed: %s", e.Err))
			return
		}
		if !res.OK {
			r.Fail(fmt.Errorf("reload failed: gen %d: %s", e.Gen, e.Err))
			return
		}
		r.OK(res)
	case control.CmdUpgrade:
		pid, err := m.bu.requestWait(ctx)
		if err != nil {
			r.Fail(fmt.Errorf("upgrade failed: %w; this master (pid %d) keeps serving", err, os.Getpid()))
			return
		}
		r.OK(control.Upgraded{PID: pid})
	case control.CmdScale:
		n, relative, _ := control.ParseScale(req.Scale)
		st, err := m.pool.Status(ctx)
		if err != nil {
			r.Fail(err)
			return
		}
		delta := n
		if !relative {
			delta = n - st.Size
		}
		if st.Size+delta < 1 {
			r.Fail(fmt.Errorf("scale %s: the group has %d workers; it keeps at least 1", req.Scale, st.Size))
			return
		}
		if st.Size+delta > control.MaxWorkers {
			r.Fail(fmt.Errorf("scale %s: the group has %d workers; it keeps at most %d", req.Scale, st.Size, control.MaxWorkers))
			return
		}
		m.pool.Scale(delta)
		r.OK(control.Scaled{Size: st.Size + delta})
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
			m.log.Printf("send: %v", err)
		}
		r.OK(control.Sent{Delivered: n})
	case control.CmdEvents:
		c, cancel := m.hub.Subscribe()
		defer cancel()
		if r.OK(nil) != nil {
			return
		}
		// The first line says the stream is on: what follows is complete.
		hello := control.Event{Time: time.Now(), Event: "connected", PID: os.Getpid()}
		if st, err := m.pool.Status(ctx); err == nil {
			hello.Generation, hello.Workers = st.Current, st.Size
		}
		if r.Stream(hello) != nil {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.Stopping():
				return
			case b, ok := <-c:
				if !ok {
					r.Stream(map[string]string{"stream_error": control.ErrBehind})
					return
				}
				if r.Stream(json.RawMessage(b)) != nil {
					return
				}
			}
		}
	default:
		r.Fail(fmt.Errorf("%s: not supported by this master", req.Cmd))
	}
}

// status gathers the pool's snapshot and each worker's figures from /proc.
func (m *instance) status(ctx context.Context) (control.Status, error) {
	ps, err := m.pool.Status(ctx)
	if err != nil {
		return control.Status{}, err
	}
	now := time.Now()
	st := control.Status{
		Name: m.name, PID: os.Getpid(), Version: fullVersion(), Started: m.started, Uptime: control.Duration(now.Sub(m.started)),
		State: ps.State, Generation: ps.Current, Pending: ps.Pending, Size: ps.Size, Stopping: ps.Stopping, Command: ps.Command.Args,
		Listeners: []control.Listener{}, Workers: []control.Worker{}, ForeignSockets: []control.ForeignSocket{},
		LogDropped: m.sink.Dropped(),
	}
	if m.socks != nil {
		for _, l := range m.socks.Listeners() {
			st.Listeners = append(st.Listeners, control.Listener{Name: l.Spec.Name, Addr: l.Addr, Mode: l.Mode.String(), Selector: l.Selector})
		}
		for _, f := range m.socks.Foreign() {
			st.ForeignSockets = append(st.ForeignSockets, control.ForeignSocket{Listener: f.Listener, Addr: f.Addr,
				Joined: f.Joined, TakesConnections: f.TakesConnections, Owners: foreignOwners(f), Since: f.Since})
		}
	}
	if e := ps.LastReload; e != nil {
		st.LastReload = &control.Reload{Generation: e.Gen, OK: e.Kind == workers.GenReady, Error: e.Err, Took: control.Duration(e.Took)}
	}
	for _, e := range ps.Errored {
		st.Errored = append(st.Errored, control.ErroredSlot{Slot: e.Slot, Why: e.Why, Since: e.Since})
	}
	for _, w := range ps.Workers {
		cw := control.Worker{
			Slot: w.Slot, Generation: w.Gen, PID: w.PID, State: w.State, Replacing: w.Replacing,
			Uptime: control.Duration(now.Sub(w.Started)), Restarts: w.Restarts, LastExit: w.LastExit,
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

// serveControl runs the control server until ctx ends.
func (m *instance) serveControl(ctx context.Context, ln *net.UnixListener, wg *sync.WaitGroup) {
	srv := control.NewServer(ln, m.handle)
	srv.Log = m.log.Printf
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx); err != nil {
			m.log.Printf("control socket stopped: %v", err)
		}
	}()
}
