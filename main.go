// Command hotcluster runs any server program as a group of worker processes
// that share the master's listening sockets, and replaces the group without
// dropping a connection: on SIGHUP, and later on a file change or an upgrade
// of hotcluster's own binary. See README.md and docs/.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/control"
	"github.com/hotcluster/hotcluster/devloop"
	"github.com/hotcluster/hotcluster/handoff"
	"github.com/hotcluster/hotcluster/internal/logfmt"
	"github.com/hotcluster/hotcluster/internal/logsink"
	"github.com/hotcluster/hotcluster/internal/safedir"
	"github.com/hotcluster/hotcluster/metrics"
	"github.com/hotcluster/hotcluster/signals"
	"github.com/hotcluster/hotcluster/systemd"
	"github.com/hotcluster/hotcluster/upgrade"
	"github.com/hotcluster/hotcluster/watch"
	"github.com/hotcluster/hotcluster/workers"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// fullVersion is version, or without -X the module version or commit the
// binary was built from, so that `hotcluster status` tells which binary
// serves after an upgrade.
func fullVersion() string {
	v := version
	if v != "dev" {
		return v
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return v
	}
	return v + "-" + rev + dirty
}

func main() {
	if workers.IsShim() {
		os.Exit(workers.ExecShim())
	}
	os.Exit(run(os.Args))
}

// usageError marks a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// reportedError is an error already written to the master's log; run only
// maps it to an exit code.
type reportedError struct{ err error }

func (e *reportedError) Error() string { return e.err.Error() }
func (e *reportedError) Unwrap() error { return e.err }

// usageIfUnsafe makes a path the user gave and hotcluster refused (in a
// directory another user could change, or with another user's name in the
// way: see package internal/safedir) a mistake in the command line.
func usageIfUnsafe(err error) error {
	var ue *safedir.UnsafeError
	if errors.As(err, &ue) {
		return &usageError{err}
	}
	return err
}

// run is main without os.Exit, returning the exit code.
func run(args []string) int {
	app := newApp()
	app.Metadata = map[string]any{argsKey: args}
	err := app.RunContext(context.Background(), scaleArgs(args))
	if err == nil {
		return 0
	}
	var re *reportedError
	if !errors.As(err, &re) {
		fmt.Fprintf(os.Stderr, "hotcluster: %v\n", err)
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:                      "hotcluster",
		Usage:                     "run a server program on every core and replace it without dropping a connection",
		Version:                   fullVersion(),
		DisableSliceFlagSeparator: true,
		HideHelpCommand:           true,
		ExitErrHandler:            func(*cli.Context, error) {}, // main maps errors to exit codes
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &usageError{err}
		},
		Commands: append([]*cli.Command{runCommand(), unitCommand(), initCommand()}, ctlCommands()...),
	}
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a worker group on shared sockets; SIGHUP replaces it, SIGTERM drains it",
		ArgsUsage: "-- COMMAND [ARG...]",
		Description: `Starts --workers copies of COMMAND. Each inherits the listening sockets as
fds 3, 4, … with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (systemd's socket
activation), a NOTIFY_SOCKET for READY=1, and HOTCLUSTER_WORKER_ID,
HOTCLUSTER_GENERATION and HOTCLUSTER_WORKERS.

Signals: HUP reloads (new generation, old one drains once the new one is
ready), USR2 upgrades hotcluster's own binary in place, TERM/INT drain and exit
(a second one, 500ms or more later, kills at once), TTIN/TTOU add or remove a
worker.`,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &usageError{err}
		},
		Flags: withConfigFile([]cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, Usage: "`[NAME=]ADDR` to listen on, repeatable: :8080, 127.0.0.1:8080, [::1]:8080, tcp4://…, tcp6://…, udp://:5353, unix:///run/app.sock"},
			&cli.IntFlag{Name: "workers", Aliases: []string{"n"}, Value: runtime.NumCPU(), Usage: "workers per generation"},
			&cli.StringFlag{Name: "ready", Value: "auto", Usage: "when a worker is ready: notify (READY=1 on NOTIFY_SOCKET), delay (alive for --ready-delay), auto (READY=1 from programs that speak the protocol, else the delay)"},
			&cli.DurationFlag{Name: "ready-delay", Value: workers.DefaultReadyDelay, Usage: "how long a worker that reports nothing must stay alive to count as ready"},
			&cli.DurationFlag{Name: "ready-timeout", Value: workers.DefaultReadyTimeout, Usage: "a new generation not ready by then fails, and the old one keeps serving"},
			&cli.DurationFlag{Name: "drain-timeout", Value: workers.DefaultDrainTimeout, Usage: "how long a stopping worker may take before it is killed"},
			&cli.StringFlag{Name: "stop-signal", Value: "TERM", Usage: "signal that asks a worker to drain and exit"},
			&cli.IntFlag{Name: "max-restarts", Value: workers.DefaultMaxRestarts, Usage: "respawns of one worker slot allowed within --restart-window; the next crash gives the slot up until the next reload (errored in status when no slot is left); 0: no limit"},
			&cli.DurationFlag{Name: "restart-window", Value: workers.DefaultRestartWindow, Usage: "the window --max-restarts counts in"},
			&cli.DurationFlag{Name: "watchdog", Usage: "each ready worker must send WATCHDOG=1 on NOTIFY_SOCKET within this interval (it gets WATCHDOG_USEC); one that misses it is hung: replaced, then aborted (default: no watchdog)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "`K=V` added to the workers' environment, repeatable"},
			&cli.StringFlag{Name: "dir", Usage: "working directory of the workers"},
			&cli.StringFlag{Name: "user", Usage: "run the workers as `USER[:GROUP]` (name or number) while the master keeps the sockets, e.g. bind :80 as root and serve as www-data"},
			&cli.StringFlag{Name: "ipc", Value: "auto", Usage: "message channel per worker (JSON lines; \"ready\" counts as READY=1): auto (for node, as NODE_CHANNEL_FD: process.send works), on (HOTCLUSTER_IPC_FD for any program), node (both, for any command), off"},
			&cli.StringFlag{Name: "handoff", Value: "auto", Usage: "how traffic moves between generations: auto (steer TCP/UDP listeners with SO_REUSEPORT and BPF, share what cannot be steered) or shared (one socket for every generation)"},
			&cli.DurationFlag{Name: "quiet-timeout", Value: handoff.DefaultQuietTimeout, Usage: "after the traffic moved to a new generation, how long to wait for the old sockets to be quiet (handshakes done, accept queue empty, every accepted request read) before the old generation is told to stop; connections still queued once it is gone are reset"},
			&cli.BoolFlag{Name: "nodelay", Value: true, Usage: "set TCP_NODELAY on the TCP sockets hotcluster binds, which accepted connections inherit (--nodelay=false leaves Nagle's algorithm on; sockets from systemd keep its NoDelay=)"},
			&cli.StringFlag{Name: "pidfile", Usage: "file that always holds the PID of the live master (written once it serves, also after an upgrade)"},
			&cli.DurationFlag{Name: "upgrade-timeout", DefaultText: "--ready-timeout + --quiet-timeout", Usage: "a new master (SIGUSR2) not serving by then is killed and the old one keeps serving"},
			&cli.StringSliceFlag{Name: "watch", Aliases: []string{"w"}, Category: "development", Usage: "`PATH` to watch (recursively) for changes that rebuild and reload, repeatable"},
			&cli.StringSliceFlag{Name: "ignore", Category: "development", Usage: "`GLOB` of paths not to watch, repeatable (.git, node_modules, editor swap files are always ignored)"},
			&cli.StringFlag{Name: "ext", Category: "development", Usage: "comma-separated extensions that count as changes, e.g. .go,.html (default: every file)"},
			&cli.DurationFlag{Name: "debounce", Category: "development", Value: watch.DefaultDebounce, Usage: "quiet time that ends a burst of changes"},
			&cli.StringFlag{Name: "build", Category: "development", Usage: "shell `COMMAND` run at start and after each burst of changes; {out} is a fresh output path per build, also usable in the worker command"},
			&cli.StringFlag{Name: "name", Category: "operations", Usage: "`NAME` of this instance for hotcluster status/reload/...; default: the program's name"},
			&cli.StringFlag{Name: "control", Category: "operations", Usage: "control socket `PATH` (default: $XDG_RUNTIME_DIR/hotcluster/NAME.sock, /run/hotcluster/NAME.sock for root)"},
			&cli.StringFlag{Name: "max-memory", Category: "operations", Usage: "replace a worker whose RSS stays above `SIZE` (e.g. 512M, 1G) for 3 checks a second apart; its replacement is ready before it drains"},
			&cli.StringFlag{Name: "metrics", Category: "operations", Usage: "serve Prometheus metrics at http://`ADDR`/metrics, e.g. 127.0.0.1:9100"},
			&cli.StringFlag{Name: "config", Usage: "TOML `FILE` setting any of these flags by name (workers = 4, listen = [\":8080\"], ready-timeout = \"30s\") and command = [...] for the worker command; the command line wins (default: ./hotcluster.toml when it exists; --config '' reads none; hotcluster init writes an example)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "format of hotcluster's own log lines: text, or json (one object per line: time, level, msg)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "info, or debug to also log every message a worker sends on its channel"},
		}),
		Before: loadConfigFile,
		Action: runAction,
	}
}

// runConfig is the validated command line of `hotcluster run`.
type runConfig struct {
	pool    workers.Config
	sockets handoff.Config
	pidfile string
	// upgradeTimeout bounds a binary upgrade.
	upgradeTimeout time.Duration
	// dev is set in development mode (--watch or --build).
	dev   *devloop.Config
	watch watch.Config
	// name and control say where the control socket is.
	name, control string
	// maxMemory (bytes, 0: none) recycles workers above it.
	maxMemory uint64
	// metrics is the address of the metrics server, if any.
	metrics string
	// debug logs the workers' messages.
	debug bool
}

func parseRun(c *cli.Context) (*runConfig, error) {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return nil, usagef("no worker command: give it after --, e.g. hotcluster run --listen :8080 -- ./server")
	}
	var rc runConfig
	p := &rc.pool
	p.Command.Args = argv
	p.Workers = c.Int("workers")
	if p.Workers < 1 {
		return nil, usagef("--workers %d: want 1 or more", p.Workers)
	}
	if p.Workers > control.MaxWorkers {
		return nil, usagef("--workers %d: more than %d; a typo would fork that many processes", p.Workers, control.MaxWorkers)
	}
	var err error
	if p.Ready, err = workers.ParseReadyMode(c.String("ready")); err != nil {
		return nil, usagef("--ready: %v", err)
	}
	p.ReadyDelay, p.ReadyTimeout, p.DrainTimeout = c.Duration("ready-delay"), c.Duration("ready-timeout"), c.Duration("drain-timeout")
	for name, d := range map[string]time.Duration{"--ready-delay": p.ReadyDelay, "--ready-timeout": p.ReadyTimeout, "--drain-timeout": p.DrainTimeout} {
		if d <= 0 {
			return nil, usagef("%s %s: want a positive duration such as 30s", name, d)
		}
	}
	if p.StopSignal, err = parseSignal(c.String("stop-signal")); err != nil {
		return nil, usagef("--stop-signal: %v", err)
	}
	switch n := c.Int("max-restarts"); {
	case n < 0:
		return nil, usagef("--max-restarts %d: want 0 (no limit) or more", n)
	case n == 0:
		p.MaxRestarts = -1
	default:
		p.MaxRestarts = n
	}
	if p.RestartWindow = c.Duration("restart-window"); p.RestartWindow <= 0 {
		return nil, usagef("--restart-window %s: want a positive duration such as 1m", p.RestartWindow)
	}
	if p.Watchdog = c.Duration("watchdog"); p.Watchdog < 0 || p.Watchdog > 0 && p.Watchdog < 10*time.Millisecond {
		return nil, usagef("--watchdog %s: want an interval of 10ms or more, such as 10s", p.Watchdog)
	}
	for _, kv := range c.StringSlice("env") {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, usagef("--env %q: want K=V", kv)
		}
		p.Env = append(p.Env, kv)
	}
	if dir := c.String("dir"); dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, usagef("--dir %s: not a directory", dir)
		}
		if p.Dir, err = filepath.Abs(dir); err != nil {
			return nil, usagef("--dir %s: %v", dir, err)
		}
	}
	if p.IPC, err = workers.ParseIPCMode(c.String("ipc")); err != nil {
		return nil, usagef("--%v", err)
	}
	switch h := c.String("handoff"); h {
	case "auto":
	case "shared":
		rc.sockets.Shared = true
	default:
		return nil, usagef("--handoff %q: want auto or shared", h)
	}
	rc.sockets.QuietTimeout = c.Duration("quiet-timeout")
	if rc.sockets.QuietTimeout <= 0 {
		return nil, usagef("--quiet-timeout %s: want a positive duration such as 5s", rc.sockets.QuietTimeout)
	}
	rc.sockets.Nagle = !c.Bool("nodelay")
	for _, l := range c.StringSlice("listen") {
		spec, err := handoff.ParseSpec(l)
		if err != nil {
			return nil, usagef("--%v", err)
		}
		rc.sockets.Specs = append(rc.sockets.Specs, spec)
	}
	if u := c.String("user"); u != "" {
		if p.Credential, err = lookupCredential(u); err != nil {
			return nil, err
		}
	}
	f, err := logfmt.ParseFormat(c.String("log-format"))
	if err != nil {
		return nil, usagef("--log-format: %v", err)
	}
	p.JSONLog = f == logfmt.FormatJSON
	switch l := c.String("log-level"); l {
	case "info":
	case "debug":
		rc.debug = true
	default:
		return nil, usagef("--log-level %q: want info or debug", l)
	}
	rc.name = c.String("name")
	if rc.name == "" {
		rc.name = defaultName(argv)
	} else if err := control.CheckName(rc.name); err != nil {
		return nil, usagef("--name: %v", err)
	}
	rc.control = controlPath(rc.name, c.String("control"))
	if m := c.String("max-memory"); m != "" {
		if rc.maxMemory, err = parseSize(m); err != nil {
			return nil, usagef("--max-memory: %v", err)
		}
	}
	if a := c.String("metrics"); a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, usagef("--metrics %q: want HOST:PORT, e.g. 127.0.0.1:9100", a)
		}
		rc.metrics = a
	}
	rc.pidfile = c.String("pidfile")
	rc.upgradeTimeout = c.Duration("upgrade-timeout")
	if rc.upgradeTimeout < 0 {
		return nil, usagef("--upgrade-timeout %s: want a positive duration", rc.upgradeTimeout)
	}
	if rc.upgradeTimeout == 0 {
		rc.upgradeTimeout = p.ReadyTimeout + rc.sockets.QuietTimeout
	}
	if c.IsSet("watch") || c.IsSet("build") {
		rc.dev = &devloop.Config{Build: c.String("build"), Command: argv, Dir: p.Dir}
		rc.watch = watch.Config{Paths: c.StringSlice("watch"), Ignore: c.StringSlice("ignore"), Debounce: c.Duration("debounce")}
		if len(rc.watch.Paths) == 0 {
			rc.watch.Paths = []string{"."}
		}
		if p.Dir != "" {
			for i, w := range rc.watch.Paths {
				if !filepath.IsAbs(w) {
					rc.watch.Paths[i] = filepath.Join(p.Dir, w)
				}
			}
		}
		if e := c.String("ext"); e != "" {
			rc.watch.Exts = strings.Split(e, ",")
		}
		if c.Duration("debounce") <= 0 {
			return nil, usagef("--debounce %s: want a positive duration such as 100ms", c.Duration("debounce"))
		}
		// A dev server that cannot start yet waits for the next change.
		p.KeepGoing = true
		if strings.Contains(argv[0], devloop.Placeholder) {
			return &rc, nil // resolved after each build
		}
	} else if c.IsSet("ignore") || c.IsSet("ext") {
		return nil, usagef("--ignore and --ext need --watch")
	}
	// Before anything is bound: a typo in the command must not cost a port.
	if p.Command.Path, err = workers.ResolveCommand(argv[0], p.Dir); err != nil {
		return nil, err
	}
	return &rc, nil
}

// useColor: colours on a terminal, unless NO_COLOR is set (no-color.org).
func useColor() bool {
	_, set := os.LookupEnv("NO_COLOR")
	return !set && devloop.IsTerminal(2)
}

// parseSignal accepts TERM, SIGTERM or 15.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q; use a name such as TERM, INT, QUIT or a number", s)
}

// logFlushTimeout bounds how long an exiting master waits for its last log
// lines to be written to an output that nobody reads.
const logFlushTimeout = 2 * time.Second

func runAction(c *cli.Context) error {
	rc, err := parseRun(c)
	if err != nil {
		return err
	}
	// From here on the master writes its log: a reader that goes away or
	// stops reading must neither kill it (SIGPIPE) nor stall it.
	signals.SurviveBrokenPipe()
	sink := logsink.New(os.Stderr, logsink.Config{Notice: dropNotice(rc.pool.JSONLog)})
	rc.pool.Output = sink
	err = serve(c, rc, sink)
	if err != nil {
		// Through the sink: a plain write to a stalled stderr would keep
		// the master from exiting.
		fmt.Fprintf(sink, "hotcluster: %v\n", err)
		err = &reportedError{err}
	}
	sink.Close(logFlushTimeout)
	return err
}

// dropNotice makes the line that says how many log lines were dropped.
func dropNotice(json bool) func(uint64) []byte {
	return func(n uint64) []byte {
		msg := fmt.Sprintf("%sdropped %d log lines: the master's output was not read fast enough (see hotcluster status)\n", logPrefix, n)
		if !json {
			return []byte(msg)
		}
		var b bytes.Buffer
		logfmt.JSON(&b, logPrefix).Write([]byte(msg))
		return b.Bytes()
	}
}

// logPrefix starts the master's own log lines in text format.
const logPrefix = "hotcluster: "

// serve runs the master of `hotcluster run` until it has stopped.
func serve(c *cli.Context, rc *runConfig, sink *logsink.Sink) error {
	closeOnExecInherited()
	// An upgrade re-executes os.Args[0]: make it the binary's real path, as
	// resolved now, whatever the shell or systemd called it.
	if exe, err := os.Executable(); err == nil {
		os.Args[0] = exe
	}
	rc.pool.Color = useColor() && !rc.pool.JSONLog
	var loop *devloop.Loop
	sd := newServiceState(systemd.NewNotifier())
	var bu *binaryUpgrade
	m := &instance{name: rc.name, started: time.Now(), debug: rc.debug, sink: sink}
	var mt *metrics.Metrics
	firstReady := true
	trim := newTrimmer()
	rc.pool.OnEvent = func(e workers.Event) {
		if loop != nil && e.Kind <= workers.GenDone {
			loop.Event(e)
		}
		sd.event(e)
		bu.event(e)
		m.event(e)
		if e.Kind == workers.GenDone {
			trim.poke()
		}
		if mt != nil {
			metricsEvent(mt, e, &firstReady)
		}
	}
	if rc.dev != nil {
		rc.dev.Color = rc.pool.Color
		// The first generation comes from the first build.
		rc.pool.Command = workers.Command{}
		rc.pool.QuietReady = true
	}
	upg, err := upgrade.New(upgrade.Config{PIDFile: rc.pidfile, UpgradeTimeout: rc.upgradeTimeout})
	if err != nil {
		return usageIfUnsafe(err)
	}
	defer upg.Stop()
	bu = newBinaryUpgrade(upg)
	if err := bu.takeOver(rc); err != nil {
		return err
	}
	m.bu = bu
	bu.onEvent = m.publish
	// The control socket before the ports: a second instance of the same
	// name must fail before it takes anything.
	ctlLn, err := inheritOrListen(upg, controlFile, listenControl(rc.control))
	if err != nil {
		return err
	}
	// The file this master removes when it stops: the socket it just bound
	// or, after an upgrade, the one the previous master still serves. None
	// if that cannot be told.
	ctlFile, ctlErr := control.IdentifySocket(rc.control)
	defer func() {
		ctlLn.Close()
		if !bu.done.Load() && ctlFile != nil {
			ctlFile.Remove()
		}
	}()
	var metricsLn net.Listener
	if rc.metrics != "" {
		metricsLn, err = inheritOrListen(upg, metricsFile, func() (net.Listener, error) {
			ln, err := net.Listen("tcp", rc.metrics)
			if err != nil {
				return nil, fmt.Errorf("--metrics: %w", err)
			}
			return ln, nil
		})
		if err != nil {
			return err
		}
		defer metricsLn.Close()
	}
	rc.sockets.Store = upg
	rc.sockets.Inherited = systemd.Listeners()
	// The sockets log once the pool's logger exists; until then they have
	// nothing to say (Open reports through its error).
	var sockLog atomic.Pointer[log.Logger]
	rc.sockets.Log = func(format string, args ...any) {
		if l := sockLog.Load(); l != nil {
			l.Printf(format, args...)
		}
	}
	var socks *handoff.Sockets
	if len(rc.sockets.Specs) > 0 || len(rc.sockets.Inherited) > 0 {
		if socks, err = handoff.Open(rc.sockets); err != nil {
			return usageIfUnsafe(occupiedError(c.Context, err, rc.control))
		}
		// After a successful upgrade the new master serves the unix
		// socket files: they must stay.
		defer func() { socks.Close(!bu.done.Load()) }()
		rc.pool.Sockets = socks
	}
	pool, err := workers.New(rc.pool)
	if err != nil {
		return err
	}
	logger := pool.Logger()
	sockLog.Store(logger)
	bu.log = logger
	// Nothing wrote the PID file before this point (the master does once it
	// serves). One that stops for good leaves none behind; one that handed
	// over leaves its successor's PID in it, which RemovePIDFile checks too.
	defer func() {
		if bu.done.Load() {
			return
		}
		if err := upg.RemovePIDFile(); err != nil {
			logger.Printf("%v", err)
		}
	}()
	m.pool, m.socks, m.log = pool, socks, logger
	var watcher *watch.Watcher
	if rc.dev != nil {
		rc.dev.Log = logger
		rc.dev.OnBuild = m.built
		if rc.pool.Credential != nil {
			// The workers' user runs the build outputs: it may enter, not
			// list, and never add or replace one.
			rc.dev.OutDirMode = 0o711
		}
		if loop, err = devloop.New(*rc.dev, pool); err != nil {
			return &usageError{err}
		}
		defer loop.Close()
		rc.watch.IgnorePaths = append(rc.watch.IgnorePaths, loop.OutDir())
		if watcher, err = watch.New(rc.watch); err != nil {
			return err
		}
		defer watcher.Close()
	}
	if socks != nil {
		for _, l := range socks.Listeners() {
			logger.Printf("listening on %s as %s (%s)", l.Addr, l.Spec.Name, listenerMode(l))
		}
		for _, name := range socks.Unused() {
			logger.Printf("closed socket %q from the service manager: no --listen matches its name or address", name)
		}
	}
	logger.Printf("control socket %s (hotcluster status --name %s)", rc.control, rc.name)
	if ctlErr != nil {
		logger.Printf("%v; it will be left when this master stops", ctlErr)
	}

	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	// The development loop (watcher, builds, keyboard) stops as soon as a
	// stop is asked for; the pool then drains.
	devCtx, devCancel := context.WithCancel(ctx)
	defer devCancel()
	var devWG sync.WaitGroup
	if loop != nil {
		devWG.Add(3)
		go func() {
			defer devWG.Done()
			if err := watcher.Run(devCtx); err != nil {
				logger.Printf("watcher stopped: %v", err)
			}
		}()
		go func() {
			defer devWG.Done()
			for ch := range watcher.Changes() {
				loop.Changed(ch.Files)
			}
		}()
		go func() {
			defer devWG.Done()
			loop.Run(devCtx)
		}()
		if devloop.IsTerminal(0) {
			logger.Printf("watching for changes; type r + Enter to rebuild")
			devWG.Add(1)
			go func() {
				defer devWG.Done()
				devloop.ReadKeys(devCtx, 0, loop.Trigger)
			}()
		}
	}
	sd.log = logger
	m.loop = loop
	m.stop = func(force bool) {
		devCancel()
		if force {
			pool.ForceStop()
			return
		}
		sd.stopping(rc.pool.DrainTimeout)
		pool.Stop()
	}
	if metricsLn != nil {
		mt = newMetrics(pool, socks, sink)
	}
	rl := newReloader(c, rc, logger)
	// refused reports a reload that a config file stopped.
	refused := func(err error) workers.Event {
		logger.Printf("reload failed: %v", err)
		sd.refused(err)
		e := workers.Event{Kind: workers.GenFailed, Err: err.Error()}
		m.event(e)
		if mt != nil {
			mt.Reload(metrics.OutcomeFailed, 0)
		}
		return e
	}
	m.reload = func(ctx context.Context) (workers.Event, error) {
		if loop != nil {
			return m.rebuild(ctx)
		}
		u, err := rl.update()
		if err != nil {
			return refused(err), nil
		}
		return pool.ReloadWait(ctx, u)
	}
	// The control socket and the metrics port are served until the pool
	// has stopped, or until a new master took them over.
	opsCtx, opsCancel := context.WithCancel(context.Background())
	defer opsCancel()
	var opsWG sync.WaitGroup
	defer opsWG.Wait()
	m.serveControl(opsCtx, ctlLn.(*net.UnixListener), &opsWG)
	if mt != nil {
		serveMetrics(opsCtx, metricsLn, mt, logger.Printf, &opsWG)
		logger.Printf("metrics on http://%s/metrics", metricsLn.Addr())
	}
	opsWG.Add(1)
	go func() {
		defer opsWG.Done()
		trim.run(ctx)
	}()
	opsWG.Add(1)
	go func() {
		defer opsWG.Done()
		watchWorkers(ctx, pool, &m.cpu, rc.maxMemory)
	}()
	if socks != nil {
		// Sockets not made by hotcluster on the steered addresses.
		opsWG.Add(1)
		go func() {
			defer opsWG.Done()
			socks.Watch(ctx, handoff.DefaultWatchInterval)
		}()
	}
	upgradeDone := make(chan struct{})
	go func() {
		defer close(upgradeDone)
		bu.run(ctx, socks, func(pid int) {
			sd.handedOver(pid)
			// The new master answers from now on.
			opsCancel()
			devCancel()
			pool.Stop()
		})
	}()
	if upg.HasParent() {
		// The previous master's sockets are free once it has exited.
		devWG.Add(1)
		go func() {
			defer devWG.Done()
			if upg.WaitForParent(ctx) == nil {
				if socks != nil {
					socks.ReleasePrevious()
				}
				bu.parentGone.Store(true)
				logger.Printf("the previous master has exited")
				sd.becameMain()
			}
		}()
	}
	sdDone := make(chan struct{})
	go func() {
		defer close(sdDone)
		sd.run(ctx)
	}()
	sigDone := make(chan struct{})
	go func() {
		defer close(sigDone)
		signals.Run(ctx, func(in signals.Intent) {
			switch in {
			case signals.Reload:
				if loop != nil {
					logger.Printf("SIGHUP: rebuild and reload")
					loop.Trigger()
					return
				}
				logger.Printf("SIGHUP: reload")
				u, err := rl.update()
				if err != nil {
					refused(err)
					return
				}
				pool.Reload(*u)
			case signals.Stop:
				m.stop(false)
			case signals.ForceStop:
				m.stop(true)
			case signals.ScaleUp:
				pool.Scale(+1)
			case signals.ScaleDown:
				pool.Scale(-1)
			case signals.Upgrade:
				bu.request()
			}
		})
	}()
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		select {
		case <-pool.Ready():
			if err := bu.announce(); err != nil {
				logger.Printf("%v", err)
			}
			sd.started()
			logger.Printf("serving (master pid %d)", os.Getpid())
		case <-pool.Done():
		}
	}()
	err = pool.Run(ctx)
	cancel()
	opsCancel()
	devWG.Wait()
	<-upgradeDone
	<-sdDone
	<-sigDone
	<-readyDone
	if err == nil {
		logger.Printf("stopped")
	}
	return err
}
