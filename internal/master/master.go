package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/devloop"
	"github.com/hotcluster/hotcluster/internal/handoff"
	"github.com/hotcluster/hotcluster/internal/health"
	"github.com/hotcluster/hotcluster/internal/logs"
	"github.com/hotcluster/hotcluster/internal/metrics"
	"github.com/hotcluster/hotcluster/internal/procstat"
	"github.com/hotcluster/hotcluster/internal/reaper"
	"github.com/hotcluster/hotcluster/internal/rescue"
	"github.com/hotcluster/hotcluster/internal/systemd"
	"github.com/hotcluster/hotcluster/signals"
	"github.com/hotcluster/hotcluster/upgrade"
	"github.com/hotcluster/hotcluster/watch"
	"github.com/hotcluster/hotcluster/workers"
	"github.com/oklog/run"
)

// Config is a validated `hotcluster run` command line. Zero fields take
// the defaults of the packages they go to.
type Config struct {
	// Pool configures the worker group. The master sets its Sockets,
	// Lines, Log, OnEvent and FirstGeneration.
	Pool workers.Config
	// WorkersFrom says where Pool.Workers came from when the command line
	// did not give it (the CPU quota, the CPU count), for the log.
	WorkersFrom string
	// Sockets configures the listeners. The master sets Store, Inherited,
	// Previous and Log.
	Sockets handoff.Config
	// Rescue is what the master does for the TCP connections a turnover
	// would lose (package rescue): HTTP, the zero value and the command
	// line's default, holds keep-alive connections too. RescueFor, by
	// listener name, overrides it for some.
	Rescue    rescue.Mode
	RescueFor map[string]rescue.Mode
	// PIDFile, when set, always holds the PID of the live master.
	PIDFile string
	// UpgradeTimeout bounds a binary upgrade.
	UpgradeTimeout time.Duration
	// Dev, when set, is development mode: Watch says what to watch.
	Dev   *devloop.Config
	Watch watch.Config
	// Name and Control say where the control socket is.
	Name, Control string
	// MaxMemory (bytes, 0: none) recycles the workers above it.
	MaxMemory uint64
	// Metrics is the address of the metrics server, "" for none.
	Metrics string
	// Health is the address of the probes' server (/livez, /readyz,
	// /status), "" for none.
	Health string
	// ShutdownDelay is how long the master keeps serving after the first
	// stop signal, with /readyz failing, before it drains: the time load
	// balancers and Kubernetes' endpoints take to stop sending.
	ShutdownDelay time.Duration
	// NoCgroup keeps the workers out of cgroups of their own (--cgroup
	// off): what they leave is then found by process group and by the
	// reaper alone.
	NoCgroup bool
	// Log says where the log goes and how it looks; Logs, when set, is the
	// log already opened from it (the caller closes it), else New opens it
	// and Run closes it.
	Log  logs.Config
	Logs *logs.Log
	// Version is what status reports.
	Version string
	// Reparse reads the command line and its config file again, at each
	// reload; nil keeps the configuration.
	Reparse func() (*Config, error)
}

// controlFile and metricsFile name the control socket and the metrics
// listener among the sockets an upgrade passes on.
const (
	controlFile = "hotcluster-control"
	metricsFile = "hotcluster-metrics"
	healthFile  = "hotcluster-health"
)

// Master is one running `hotcluster run`. Create it with New, run it with
// Run; its methods are for Run's own actors and the control socket.
type Master struct {
	cfg     Config
	log     *slog.Logger
	logs    *logs.Log
	ownLogs bool // opened by New, closed by Run
	started time.Time

	upg       *upgrade.Upgrader
	coord     *upgrade.Coordinator
	ctlLn     *net.UnixListener
	ctlFile   *control.SocketFile // nil when it could not be told
	ctlErr    error
	metricsLn net.Listener
	healthLn  net.Listener     // nil without --health
	socks     *handoff.Sockets // nil without listeners
	rescue    *rescue.Rescuer  // nil without a steered TCP listener
	pool      *workers.Pool
	loop      *devloop.Loop // nil in production
	watcher   *watch.Watcher
	sd        *serviceState
	mt        *metrics.Metrics // nil without --metrics
	hub       control.Hub
	trim      *trimmer
	reload    *reloader
	left      *leftovers
	cpu       procstat.Sampler

	// gen is the newest generation started, for an upgrade's state.
	gen atomic.Uint64
	// handedOver is set once a new master took over.
	handedOver atomic.Bool
	firstReady atomic.Bool // the first GenReady is not a reload
	devCancel  context.CancelFunc
	outcomes   outcomes
	// stopping is set at the first stop request: /readyz fails from then
	// on. delay is the --shutdown-delay under way.
	stopping atomic.Bool
	delay    shutdownDelay
}

// New opens everything the master serves with: the upgrader (taking over
// what a previous master passed), the control socket, the metrics port,
// the listening sockets, the pool, and in development mode the build loop
// and the watcher. It starts no process. On error nothing is left open;
// the error is a *handoff.InUseError when an address is taken, a
// *safedir.UnsafeError for a path another user could change, and wraps
// control.ErrInUse when another master has the same name.
func New(config Config) (_ *Master, err error) {
	m := &Master{cfg: config, started: time.Now(), trim: newTrimmer()}
	cfg := &m.cfg // takeOver adds to it
	if cfg.Logs == nil {
		if cfg.Logs, err = logs.Open(cfg.Log); err != nil {
			return nil, err
		}
		m.ownLogs = true
	}
	m.logs = cfg.Logs
	m.log = m.logs.Logger()
	m.firstReady.Store(true)
	var undo undoList
	if m.ownLogs {
		undo.add(func() { m.logs.Close(logFlushTimeout) })
	}
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	closeOnExecInherited()
	// The leftovers before anything forks: the reaper must know every
	// child of its own. The control socket before the ports: a second
	// instance of the same name must fail before it takes anything.
	for _, open := range []func(*undoList) error{m.openLeftovers, m.openUpgrader, m.openControl, m.openMetrics, m.openHealth, m.openSockets, m.openRescue, m.openPool, m.openDev} {
		if err := open(&undo); err != nil {
			return nil, err
		}
	}
	if m.metricsLn != nil {
		m.mt = newMetrics(m)
	}
	return m, nil
}

// undoList closes, in reverse, what New opened before it failed.
type undoList []func()

func (u *undoList) add(f func()) { *u = append(*u, f) }

func (u undoList) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// openUpgrader makes the upgrader and the coordinator, and takes over what
// a previous master passed, if an upgrade started this one.
func (m *Master) openUpgrader(undo *undoList) error {
	var err error
	m.upg, err = upgrade.New(upgrade.Config{PIDFile: m.cfg.PIDFile, UpgradeTimeout: m.cfg.UpgradeTimeout})
	if err != nil {
		return err
	}
	undo.add(m.upg.Stop)
	m.coord, err = upgrade.NewCoordinator(m.upg, upgrade.CoordinatorConfig{
		Prepare:      m.prepareUpgrade,
		Failed:       m.upgradeFailed,
		OnEvent:      m.upgradeEvent,
		ParentExited: m.parentExited,
		Log:          m.log,
	})
	if err != nil {
		return err
	}
	return m.takeOver()
}

// openControl binds the control socket, or takes the previous master's.
func (m *Master) openControl(undo *undoList) error {
	ln, err := upgrade.InheritOrListen(m.upg, controlFile, func() (net.Listener, error) { return control.Listen(m.cfg.Control) })
	if err != nil {
		return err
	}
	m.ctlLn = ln.(*net.UnixListener)
	undo.add(func() { m.ctlLn.Close() })
	// The file this master removes when it stops: the socket it just bound
	// or, after an upgrade, the one the previous master still serves.
	m.ctlFile, m.ctlErr = control.IdentifySocket(m.cfg.Control)
	return nil
}

// openMetrics binds the metrics port, or takes the previous master's.
func (m *Master) openMetrics(undo *undoList) error {
	if m.cfg.Metrics == "" {
		return nil
	}
	var err error
	m.metricsLn, err = upgrade.InheritOrListen(m.upg, metricsFile, func() (net.Listener, error) {
		ln, err := net.Listen("tcp", m.cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("--metrics: %w", err)
		}
		return ln, nil
	})
	if err != nil {
		return err
	}
	undo.add(func() { m.metricsLn.Close() })
	return nil
}

// openLeftovers starts what finds and stops the processes a worker leaves
// behind: the reaper, the cgroup tree, the keeper.
func (m *Master) openLeftovers(undo *undoList) error {
	m.left = newLeftovers(leftoversConfig{noCgroup: m.cfg.NoCgroup, jsonLog: m.cfg.Log.Format == logs.JSON}, m.log)
	undo.add(m.left.close)
	return nil
}

// openHealth binds the health port, or takes the previous master's.
func (m *Master) openHealth(undo *undoList) error {
	if m.cfg.Health == "" {
		return nil
	}
	var err error
	m.healthLn, err = upgrade.InheritOrListen(m.upg, healthFile, func() (net.Listener, error) {
		ln, err := net.Listen("tcp", m.cfg.Health)
		if err != nil {
			return nil, fmt.Errorf("--health: %w", err)
		}
		return ln, nil
	})
	if err != nil {
		return err
	}
	undo.add(func() { m.healthLn.Close() })
	return nil
}

// openSockets opens the listeners: bound here, handed in by systemd, or
// kept from a previous master.
func (m *Master) openSockets(undo *undoList) error {
	sc := &m.cfg.Sockets
	sc.Store = m.upg
	sc.Inherited = systemd.Listeners()
	sc.Log = func(format string, args ...any) { m.log.Warn(fmt.Sprintf(format, args...)) }
	sc.Stranded = m.stranded
	if len(sc.Specs) == 0 && len(sc.Inherited) == 0 {
		return nil
	}
	var err error
	if m.socks, err = handoff.Open(*sc); err != nil {
		return err
	}
	undo.add(func() { m.socks.Close(true) })
	m.cfg.Pool.Sockets = m.socks
	return nil
}

// openPool makes the pool, and what follows it: systemd, reloads.
func (m *Master) openPool(*undoList) error {
	p := &m.cfg.Pool
	p.Lines = m.workerLine
	p.Log = m.log
	p.OnEvent = m.event
	p.BeforeStop = m.hold
	p.Leftovers = m.left
	if err := m.checkRollout(p.Rollout); err != nil {
		return err
	}
	if m.cfg.Dev != nil {
		// The first generation comes from the first build.
		p.Command = workers.Command{}
	}
	var err error
	if m.pool, err = workers.New(*p); err != nil {
		return err
	}
	m.sd = newServiceState(systemd.NewNotifier(), m.log, func(ctx context.Context) bool {
		_, err := m.pool.Status(ctx)
		return err == nil
	})
	m.reload = newReloader(&m.cfg, m.log)
	m.reload.check = m.checkRollout
	return nil
}

// openDev makes, in development mode, the build loop and the watcher.
func (m *Master) openDev(undo *undoList) error {
	if m.cfg.Dev == nil {
		return nil
	}
	d := *m.cfg.Dev
	d.Log = m.log
	d.Color = m.logs.MasterColor()
	d.OnBuild = m.built
	if m.cfg.Pool.Credential != nil {
		// The workers' user runs the build outputs: it may enter, not
		// list, and never add or replace one.
		d.OutDirMode = 0o711
	}
	var err error
	if m.loop, err = devloop.New(d, m.pool); err != nil {
		return err
	}
	undo.add(func() { m.loop.Close() })
	w := m.cfg.Watch
	w.IgnorePaths = append(w.IgnorePaths, m.loop.OutDir())
	if m.watcher, err = watch.New(w); err != nil {
		return err
	}
	undo.add(func() { m.watcher.Close() })
	return nil
}

// upgradeState is what a master passes to the one its upgrade starts,
// beside the sockets: its newest generation and which sockets its
// generations hold.
func (m *Master) prepareUpgrade() (string, error) {
	if err := m.rollingNow(); err != nil {
		return "", err
	}
	if m.left.keeper != nil {
		// The new master holds the sockets too from now on.
		m.left.keeper.Hold()
	}
	state := "gen=" + strconv.FormatUint(m.gen.Load(), 10)
	if m.socks != nil {
		if err := m.socks.Persist(); err != nil {
			return "", err
		}
		state += ";" + m.socks.Handover().String()
	}
	if err := m.prepareRelays(); err != nil {
		return "", err
	}
	return state, nil
}

// takeOver reads the state a previous master passed, if this master was
// started by an upgrade.
func (m *Master) takeOver() error {
	s := m.coord.Inherited()
	if s == "" {
		return nil
	}
	// WATCHDOG_PID names the previous master; this one becomes the main
	// process and must keep the watchdog fed once it is.
	os.Unsetenv("WATCHDOG_PID")
	gen, rest, _ := strings.Cut(s, ";")
	n, err := strconv.ParseUint(strings.TrimPrefix(gen, "gen="), 10, 64)
	if err != nil {
		return fmt.Errorf("state from the previous master %q: %w", s, err)
	}
	prev, err := handoff.ParsePrevious(rest)
	if err != nil {
		return err
	}
	m.cfg.Sockets.Previous = &prev
	m.cfg.Pool.FirstGeneration = n + 1
	return nil
}

// upgradeFailed takes the traffic back: the new master may have steered to
// its own generation before it failed.
func (m *Master) upgradeFailed() {
	if m.left.keeper != nil {
		m.left.keeper.Unhold()
	}
	m.relaysStay()
	if m.socks == nil {
		return
	}
	if err := m.socks.Reclaim(); err != nil {
		m.log.Error(fmt.Sprintf("upgrade failed: %v", err))
	}
}

func (m *Master) upgradeEvent(name string, pid int, err error) {
	e := control.Event{Time: time.Now(), Event: name, PID: pid}
	if err != nil {
		e.Error = err.Error()
	}
	m.hub.Publish(e)
}

// parentExited frees the sockets of the master that started this one,
// once it is gone, and repeats READY=1 to systemd, which ignored it while
// MAINPID still named the old master.
func (m *Master) parentExited() {
	if m.socks != nil {
		m.socks.ReleasePrevious()
	}
	m.sd.becameMain()
}

// Run serves until the master stops (see the package doc for its phases)
// and returns the pool's failure, if any: a first generation that could
// not start.
func (m *Master) Run(ctx context.Context) error {
	m.logStart()
	ops := m.startOps()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer m.delay.cancel()
	devCtx, devCancel := context.WithCancel(ctx)
	m.devCancel = devCancel
	defer devCancel()

	var g run.Group
	var poolErr error
	g.Add(func() error {
		poolErr = m.pool.Run(ctx)
		return poolErr
	}, func(error) { m.pool.Stop() })
	// Every other actor returns only once interrupted: the pool ends the
	// phase.
	m.actor(&g, ctx, func(ctx context.Context) { signals.Run(ctx, m.intent) })
	m.actor(&g, ctx, m.coord.Run)
	m.actor(&g, ctx, func(ctx context.Context) { m.awaitHandover(ctx, ops) })
	m.actor(&g, ctx, m.sd.run)
	m.actor(&g, ctx, m.trim.run)
	m.actor(&g, ctx, func(ctx context.Context) { watchWorkers(ctx, m.pool, &m.cpu, m.cfg.MaxMemory) })
	m.actor(&g, ctx, m.announce)
	m.actor(&g, ctx, m.left.reaper.Run)
	if m.socks != nil {
		m.actor(&g, ctx, func(ctx context.Context) { m.socks.Watch(ctx, handoff.DefaultWatchInterval) })
	}
	if m.rescue != nil {
		// Interrupted once the pool ended: its relays are closed (or
		// handed to a new master) and waited for.
		m.actor(&g, ctx, m.rescue.Run)
	}
	if m.loop != nil {
		m.devActors(&g, devCtx)
	}
	g.Run()

	ops.stop()
	m.release()
	if poolErr == nil {
		m.log.Info("stopped")
	}
	if m.ownLogs {
		if poolErr != nil {
			m.logs.Final(poolErr)
		}
		m.logs.Close(logFlushTimeout)
	}
	return poolErr
}

// logFlushTimeout bounds how long an exiting master waits for its last log
// lines to be written to an output that nobody reads.
const logFlushTimeout = 2 * time.Second

// workerLine logs a line a worker printed (workers.Config.Lines).
func (m *Master) workerLine(l workers.Line) {
	r := logs.WorkerRecord(l.Time, l.Gen, l.Slot, l.PID, l.Stream.String(), l.Text, l.Cut)
	m.logs.Worker(&r)
}

// actor adds fn to g: it runs with a context that the group's interrupt
// cancels, and returns only then.
func (m *Master) actor(g *run.Group, parent context.Context, fn func(context.Context)) {
	ctx, cancel := context.WithCancel(parent)
	g.Add(func() error {
		fn(ctx)
		<-ctx.Done()
		return nil
	}, func(error) { cancel() })
}

// devActors adds the development loop's actors, on ctx: the watcher, what
// hands its changes to the build loop, the loop, and the keyboard.
func (m *Master) devActors(g *run.Group, ctx context.Context) {
	m.actor(g, ctx, func(ctx context.Context) {
		if err := m.watcher.Run(ctx); err != nil {
			m.log.Error(fmt.Sprintf("watcher stopped: %v", err))
		}
	})
	m.actor(g, ctx, func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case ch, ok := <-m.watcher.Changes():
				if !ok {
					return
				}
				m.loop.Changed(ch.Files)
			}
		}
	})
	m.actor(g, ctx, func(ctx context.Context) { m.loop.Run(ctx) })
	if devloop.IsTerminal(0) {
		m.log.Info("watching for changes; type r + Enter to rebuild")
		m.actor(g, ctx, func(ctx context.Context) { devloop.ReadKeys(ctx, 0, m.loop.Trigger) })
	}
}

// logStart says what the master listens on.
func (m *Master) logStart() {
	if m.socks != nil {
		for _, l := range m.socks.Listeners() {
			m.log.Info(fmt.Sprintf("listening on %s as %s (%s)", l.Addr, l.Spec.Name, ListenerMode(l)), "listener", l.Spec.Name, "addr", l.Addr)
		}
		for _, name := range m.socks.Unused() {
			m.log.Warn(fmt.Sprintf("closed socket %q from the service manager: no --listen matches its name or address", name))
		}
	}
	if m.cfg.WorkersFrom != "" {
		m.log.Info(fmt.Sprintf("%s per generation: %s", workersN(m.cfg.Pool.Workers), m.cfg.WorkersFrom))
	}
	m.log.Info(m.left.describe())
	m.log.Info(fmt.Sprintf("control socket %s (hotcluster status --name %s)", m.cfg.Control, m.cfg.Name))
	if m.ctlErr != nil {
		m.log.Warn(fmt.Sprintf("%v; it will be left when this master stops", m.ctlErr))
	}
	if m.metricsLn != nil {
		m.log.Info(fmt.Sprintf("metrics on http://%s/metrics", m.metricsLn.Addr()))
	}
	if m.healthLn != nil {
		m.log.Info(fmt.Sprintf("health on http://%s (/livez, /readyz, /status)", m.healthLn.Addr()))
	}
}

// ListenerMode says how a listener moves traffic, for the log: "steered,
// ebpf", "steered, cbpf: why", "shared: why".
func ListenerMode(l handoff.Listener) string {
	mode := l.Mode.String()
	if l.Selector != "" {
		mode += ", " + l.Selector
	}
	if l.PerSlot {
		mode += ", a socket per worker"
	}
	if l.Sticky {
		mode += ", sticky by client address"
	}
	if l.Why != "" {
		mode += ": " + l.Why
	}
	return mode
}

// announce waits for the first generation to serve, then tells the
// previous master (after an upgrade) and systemd.
func (m *Master) announce(ctx context.Context) {
	select {
	case <-m.pool.Ready():
		if err := m.coord.Announce(); err != nil {
			m.log.Error(err.Error())
		}
		m.sd.started()
		m.log.Info(fmt.Sprintf("serving (master pid %d)", os.Getpid()))
	case <-m.pool.Done():
	case <-ctx.Done():
	}
}

// awaitHandover drains this master once a new one took over: systemd
// learns the new main PID, the control socket and the metrics port are
// the new master's to answer, and the workers drain.
func (m *Master) awaitHandover(ctx context.Context, ops *opsServers) {
	select {
	case pid := <-m.coord.HandedOver():
		m.handedOver.Store(true)
		m.relaysHandedOver()
		if m.left.keeper != nil {
			m.left.keeper.HandedOver()
		}
		m.sd.handedOver(pid)
		ops.stop()
		m.devCancel()
		m.pool.Stop()
	case <-ctx.Done():
	}
}

// intent acts on a signal.
func (m *Master) intent(in signals.Intent) {
	switch in {
	case signals.Reload:
		if m.loop != nil {
			m.log.Info("SIGHUP: rebuild and reload")
			m.loop.Trigger()
			return
		}
		m.log.Info("SIGHUP: reload")
		u, err := m.reload.update()
		if err != nil {
			m.refused(err)
			return
		}
		m.pool.Reload(*u)
	case signals.Stop:
		m.shutdown()
	case signals.ForceStop:
		m.stop(true)
	case signals.ScaleUp:
		m.pool.Scale(+1)
	case signals.ScaleDown:
		m.pool.Scale(-1)
	case signals.Upgrade:
		if err := m.upgradeRefused(); err != nil {
			m.log.Error(fmt.Sprintf("SIGUSR2: %v", err))
			return
		}
		m.coord.Request()
	case signals.ReopenLogs:
		if err := m.logs.Reopen(); err != nil {
			m.log.Error(fmt.Sprintf("SIGUSR1: reopen the log files: %v; writing on to the files open before", err))
			return
		}
		// Said also without files, so that whoever sent it (logrotate's
		// postrotate, a person, a test) sees the master took it.
		if files := m.logs.Files(); len(files) > 0 {
			m.log.Info(fmt.Sprintf("SIGUSR1: reopened %s", strings.Join(files, ", ")))
		} else {
			m.log.Info("SIGUSR1: no log file to reopen (the log goes to stderr or the journal)")
		}
	}
}

// shutdown is the first stop signal: /readyz fails from now on and, after
// --shutdown-delay of serving on (a load balancer or Kubernetes' endpoints
// take a moment to stop sending: kubernetes#67592), the workers drain.
func (m *Master) shutdown() {
	d := m.cfg.ShutdownDelay
	if d <= 0 {
		m.stop(false)
		return
	}
	m.stopping.Store(true)
	m.log.Info(fmt.Sprintf("stopping: /readyz fails from now on; serving %s more (--shutdown-delay), then draining", d))
	m.sd.stopping(d + m.cfg.Pool.DrainTimeout)
	m.delay.start(d, func() { m.stop(false) })
}

// stop ends the development loop, then drains (or with force kills) the
// workers; Run then returns. It ends a --shutdown-delay under way: a
// second stop signal and `hotcluster stop` drain (or kill) at once.
func (m *Master) stop(force bool) {
	m.stopping.Store(true)
	m.delay.cancel()
	m.devCancel()
	if force {
		m.pool.ForceStop()
		return
	}
	m.sd.stopping(m.cfg.Pool.DrainTimeout)
	m.pool.Stop()
}

// refused reports a reload that the config file stopped.
func (m *Master) refused(err error) workers.Event {
	m.log.Error(fmt.Sprintf("reload failed: %v", err))
	m.sd.refused(err)
	e := workers.Event{Kind: workers.GenFailed, Err: err.Error()}
	m.publish(e)
	if m.mt != nil {
		m.mt.Reload(metrics.OutcomeFailed, 0)
	}
	return e
}

// release closes what New opened, once the pool has stopped and the
// operations have: after a hand-over the new master serves the unix socket
// files, the control socket and the PID file, which stay.
func (m *Master) release() {
	handed := m.handedOver.Load()
	if m.watcher != nil {
		m.watcher.Close()
	}
	if m.loop != nil {
		m.loop.Close()
	}
	if m.socks != nil {
		m.socks.Close(!handed)
	}
	if m.metricsLn != nil {
		m.metricsLn.Close()
	}
	if m.healthLn != nil {
		m.healthLn.Close()
	}
	m.ctlLn.Close()
	if !handed {
		if m.ctlFile != nil {
			m.ctlFile.Remove()
		}
		if err := m.upg.RemovePIDFile(); err != nil {
			m.log.Warn(err.Error())
		}
	}
	m.left.close()
	m.upg.Stop()
}

// upgradeRefused says why this master cannot be upgraded in place: as PID
// 1 of its namespace, its exit would take the new master with it (the
// kernel kills every process of a namespace whose PID 1 exits).
func (m *Master) upgradeRefused() error {
	if m.left.reaper.Role() == reaper.PID1 {
		return errors.New("upgrade refused: this master is PID 1 of its PID namespace (a container), and when it exits the kernel kills every process there, the new master too; roll out a new image instead")
	}
	return nil
}

// opsServers are the control socket and the metrics port: served from
// before the pool starts until after it has stopped (or a hand-over).
type opsServers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func (m *Master) startOps() *opsServers {
	ctx, cancel := context.WithCancel(context.Background())
	o := &opsServers{cancel: cancel}
	srv := control.NewServer(m.ctlLn, m.handle)
	srv.Log = func(format string, args ...any) { m.log.Warn(fmt.Sprintf(format, args...)) }
	o.wg.Go(func() {
		if err := srv.Serve(ctx); err != nil {
			m.log.Error(fmt.Sprintf("control socket stopped: %v", err))
		}
	})
	if m.mt != nil {
		o.wg.Go(func() {
			if err := metrics.Serve(ctx, m.metricsLn, m.mt.Handler()); err != nil && !errors.Is(err, net.ErrClosed) {
				m.log.Error(fmt.Sprintf("metrics server stopped: %v", err))
			}
		})
	}
	if m.healthLn != nil {
		h := health.Handler(health.Checks{Live: m.live, Ready: m.ready, Status: func(ctx context.Context) (any, error) { return m.status(ctx) }})
		upgraded := m.coord.Inherited() != ""
		o.wg.Go(func() {
			if upgraded {
				// The listener is shared with the previous master, which
				// serves until this one's first generation is ready: until
				// then this one would say "not ready" for a service that
				// is.
				select {
				case <-m.pool.Ready():
				case <-m.pool.Done():
					return
				case <-ctx.Done():
					return
				}
			}
			if err := health.Serve(ctx, m.healthLn, h); err != nil && !errors.Is(err, net.ErrClosed) {
				m.log.Error(fmt.Sprintf("health server stopped: %v", err))
			}
		})
	}
	return o
}

// stop ends the servers and waits for them (each bounds its own grace).
// Safe to call twice.
func (o *opsServers) stop() {
	o.once.Do(func() {
		o.cancel()
		o.wg.Wait()
	})
}
