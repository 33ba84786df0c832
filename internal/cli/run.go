// Package cli is hotcluster's command line: the urfave/cli application,
// its commands, and the config file of `hotcluster run`. It is the only
// importer of github.com/urfave/cli and github.com/BurntSushi/toml.
//
// Usage mistakes are *usageError values, mapped to exit code 2 once, by
// Main; every other failure is exit code 1.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/devloop"
	"github.com/hotcluster/hotcluster/internal/handoff"
	"github.com/hotcluster/hotcluster/internal/logfile"
	"github.com/hotcluster/hotcluster/internal/logring"
	"github.com/hotcluster/hotcluster/internal/logs"
	"github.com/hotcluster/hotcluster/internal/master"
	"github.com/hotcluster/hotcluster/internal/rescue"
	"github.com/hotcluster/hotcluster/internal/safedir"
	"github.com/hotcluster/hotcluster/signals"
	"github.com/hotcluster/hotcluster/watch"
	"github.com/hotcluster/hotcluster/workers"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

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

// Main runs the command line args (os.Args) and returns the exit code.
func Main(args []string) int {
	return runApp(args, os.Stdout, os.Stderr)
}

// runApp is Main with its outputs given, for in-process tests of the
// commands that start no master.
func runApp(args []string, stdout, stderr io.Writer) int {
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	app.Metadata = map[string]any{argsKey: args}
	if n := len(args); n == 0 || args[n-1] != completionFlag {
		// Not while completing: with the "--" it adds, urfave/cli would
		// run `scale -1` instead of completing it.
		args = scaleArgs(args)
	}
	err := app.RunContext(context.Background(), args)
	if err == nil {
		return 0
	}
	var re *reportedError
	if !errors.As(err, &re) {
		fmt.Fprintf(stderr, "hotcluster: %v\n", err)
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// completionFlag ends the command line a shell's completion script runs
// (urfave/cli's EnableBashCompletion): the words that may follow are
// printed, and nothing is run.
const completionFlag = "--generate-bash-completion"

// argsKey is where Main keeps the command line in the app's Metadata: a
// reload parses it again, with the config file as it is now.
const argsKey = "args"

func newApp() *cli.App {
	app := &cli.App{
		Name:                      "hotcluster",
		Usage:                     "run a server program on every core and replace it without dropping a connection",
		Version:                   versionLine(),
		DisableSliceFlagSeparator: true,
		// Ours (helpCommand) answers "help stauts" with a suggestion and
		// exit 2; it needs the --help flag given by hand.
		HideHelpCommand:      true,
		Flags:                []cli.Flag{cli.HelpFlag},
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {}, // Main maps errors to exit codes
		OnUsageError:         onUsageError,
		Action:               rootAction,
		Commands: append(append([]*cli.Command{runCommand(), unitCommand(), initCommand(), keeperCommand()}, ctlCommands()...),
			withCategory(docsCategory, helpCommand(), completionCommand(), manCommand())...),
	}
	for _, c := range app.Commands {
		if c.BashComplete == nil {
			c.BashComplete = completeFlags(c)
		}
	}
	return app
}

// docsCategory groups the commands about hotcluster itself in the help.
const docsCategory = "help, manual and shell completion"

func withCategory(cat string, cmds ...*cli.Command) []*cli.Command {
	for _, c := range cmds {
		c.Category = cat
	}
	return cmds
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
		OnUsageError: onUsageError,
		Flags: withConfigFile([]cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, Usage: "`[NAME=]ADDR` to listen on, repeatable: :8080, 127.0.0.1:8080, [::1]:8080, tcp4://…, tcp6://…, udp://:5353, unix:///run/app.sock"},
			&cli.IntFlag{Name: "workers", Aliases: []string{"n"}, DefaultText: "the CPU quota of its cgroup, else the CPUs it may run on", Usage: "`N` workers per generation"},
			&cli.StringFlag{Name: "ready", Value: "auto", Usage: "`MODE`: when a worker is ready: notify (READY=1 on NOTIFY_SOCKET), delay (alive for --ready-delay), auto (READY=1 from programs that speak the protocol, else once it listens on every --listen socket, else the delay)"},
			&cli.DurationFlag{Name: "ready-delay", Value: workers.DefaultReadyDelay, Usage: "`D`: how long a worker that reports nothing must stay alive to count as ready"},
			&cli.DurationFlag{Name: "ready-timeout", Value: workers.DefaultReadyTimeout, Usage: "`D`: a new generation not ready by then fails, and the old one keeps serving"},
			&cli.DurationFlag{Name: "drain-timeout", Value: workers.DefaultDrainTimeout, Usage: "`D`: how long a stopping worker may take before it is killed"},
			&cli.StringFlag{Name: "rollout", Value: "all", Usage: "`K|P%`: a reload replaces K workers (or P% of them, rounded up) at a time: K new ones start, take their slots' traffic once ready, the K old ones drain, then the next K; at most N+K workers live. A batch that fails rolls the replaced slots back to the old command. all: the whole generation at once. Needs a socket per worker slot (TCP/UDP with the eBPF selector: root or CAP_BPF), or no --listen"},
			&cli.StringFlag{Name: "stop-signal", Value: "TERM", Usage: "`SIG`: the signal that asks a worker to drain and exit"},
			&cli.IntFlag{Name: "max-restarts", Value: workers.DefaultMaxRestarts, Usage: "`N` respawns of one worker slot allowed within --restart-window; the next crash gives the slot up until the next reload (errored in status when no slot is left); 0: no limit"},
			&cli.DurationFlag{Name: "restart-window", Value: workers.DefaultRestartWindow, Usage: "`D`: the window --max-restarts counts in"},
			&cli.DurationFlag{Name: "watchdog", Usage: "`D`: each ready worker must send WATCHDOG=1 on NOTIFY_SOCKET within this interval (it gets WATCHDOG_USEC); one that misses it is hung: replaced, then aborted (default: no watchdog)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "`K=V` added to the workers' environment, repeatable"},
			&cli.StringFlag{Name: "dir", Usage: "working directory `DIR` of the workers (default: the current one)"},
			&cli.StringFlag{Name: "user", Usage: "run the workers as `USER[:GROUP]` (name or number; a uid the user database does not know needs its GROUP, e.g. 10001:10001) while the master keeps the sockets, e.g. bind :80 as root and serve as www-data"},
			&cli.StringFlag{Name: "ipc", Value: "auto", Usage: "`MODE` of the message channel per worker (JSON lines; \"ready\" counts as READY=1): auto (for node, as NODE_CHANNEL_FD: process.send works), on (HOTCLUSTER_IPC_FD for any program), node (both, for any command), off"},
			&cli.StringFlag{Name: "intercept-bind", Value: "auto", Usage: "`MODE`: a worker that binds a --listen address itself (python3 -m http.server 8000, app.listen(3000), net.Listen) gets the master's socket, and its listen(2) tells that it is ready: auto (where the kernel allows: Linux 5.9 with seccomp user notification) or off"},
			&cli.StringFlag{Name: "handoff", Value: "auto", Usage: "`MODE`: how traffic moves between generations: auto (steer TCP/UDP listeners with SO_REUSEPORT and BPF, share what cannot be steered) or shared (one socket for every generation)"},
			&cli.StringFlag{Name: "balance", Value: "hash", Usage: "`MODE`: which worker a new connection or datagram goes to, where each worker has a socket of its own (the eBPF selector: root or CAP_BPF): hash (the kernel's flow hash, over the serving workers) or sticky (the client's source address picks the worker slot, and keeps it across reloads and upgrades; adding a worker moves about 1/(N+1) of the clients; refused where a TCP/UDP listener cannot have a socket per worker)"},
			&cli.DurationFlag{Name: "quiet-timeout", Value: handoff.DefaultQuietTimeout, Usage: "`D`: after the traffic moved to a new generation, how long to wait for the old sockets to be quiet (handshakes done, accept queue empty, every accepted request read) before the old generation is told to stop; connections still queued once it is gone are relayed to the new one (see --rescue)"},
			&cli.StringSliceFlag{Name: "rescue", Usage: "`[LISTENER=]MODE` for the TCP connections a turnover would lose, for every listener or, with LISTENER=, for one (repeatable): http, the default (hold the old workers' connections at their stop signal; one a worker closes with its client's next HTTP/1.x request unread is relayed to the serving generation for that one request, one closed with nothing sent since its last answer is closed, anything else is reset as the worker's own close would; and as queue), queue (only relay what is left in a retired socket's accept queue to the serving generation, any protocol: for listeners whose clients must never meet a relay), off (reset what is left queued)"},
			&cli.BoolFlag{Name: "nodelay", Value: true, Usage: "set TCP_NODELAY on the TCP sockets hotcluster binds, which accepted connections inherit (--nodelay=false leaves Nagle's algorithm on; sockets from systemd keep its NoDelay=)"},
			&cli.StringFlag{Name: "pidfile", Usage: "`FILE` that always holds the PID of the live master (written once it serves, also after an upgrade)"},
			&cli.DurationFlag{Name: "upgrade-timeout", DefaultText: "--ready-timeout + --quiet-timeout", Usage: "`D`: a new master (SIGUSR2) not serving by then is killed and the old one keeps serving"},
			&cli.StringSliceFlag{Name: "watch", Aliases: []string{"w"}, Category: "development", Usage: "`PATH` to watch (recursively) for changes that rebuild and reload, repeatable"},
			&cli.StringSliceFlag{Name: "ignore", Category: "development", Usage: "`GLOB` of paths not to watch, repeatable (.git, node_modules, editor swap files are always ignored)"},
			&cli.StringFlag{Name: "ext", Category: "development", Usage: "comma-separated `EXTS` that count as changes, e.g. .go,.html (default: every file)"},
			&cli.DurationFlag{Name: "debounce", Category: "development", Value: watch.DefaultDebounce, Usage: "`D` of quiet time that ends a burst of changes"},
			&cli.StringFlag{Name: "build", Category: "development", Usage: "shell `COMMAND` run at start and after each burst of changes; {out} is a fresh output path per build, also usable in the worker command"},
			&cli.StringFlag{Name: "name", Category: "operations", Usage: "`NAME` of this instance for hotcluster status/reload/...; default: the program's name"},
			&cli.StringFlag{Name: "control", Category: "operations", Usage: "control socket `PATH` (default: $XDG_RUNTIME_DIR/hotcluster/NAME.sock, /run/hotcluster/NAME.sock for root)"},
			&cli.StringFlag{Name: "max-memory", Category: "operations", Usage: "replace a worker whose RSS stays above `SIZE` (e.g. 512M, 1G) for 3 checks a second apart; its replacement is ready before it drains"},
			&cli.StringFlag{Name: "metrics", Category: "operations", Usage: "serve Prometheus metrics at http://`ADDR`/metrics, e.g. 127.0.0.1:9100"},
			&cli.StringFlag{Name: "health", Category: "operations", Usage: "serve the probes at http://`ADDR`: /livez (the master's loop answers), /readyz (a generation serves; 503 from the start of a shutdown), /status (status --json), e.g. :8081 for Kubernetes' probes"},
			&cli.DurationFlag{Name: "shutdown-delay", Category: "operations", Usage: "`D`: on the first SIGTERM/SIGINT, fail /readyz and keep serving this long before draining, while load balancers and Kubernetes' endpoints stop sending (5s-10s there); hotcluster stop drains at once, a second signal kills the workers at once (default: 0, drain at once)"},
			&cli.StringFlag{Name: "cgroup", Category: "operations", Value: "auto", Usage: "`MODE`: auto: each worker in a cgroup of its own, where hotcluster may make one (root, or a subtree systemd delegated), so that whatever it starts is killed with it; off: process groups and the reaper of orphans only"},
			&cli.StringFlag{Name: "config", Usage: "TOML `FILE` setting any of these flags by name (workers = 4, listen = [\":8080\"], ready-timeout = \"30s\") and command = [...] for the worker command; the command line wins (default: ./hotcluster.toml when it exists; --config '' reads none; hotcluster init writes an example)"},
			&cli.StringFlag{Name: "log-format", Category: "logs", Value: "text", Usage: "`FORMAT` of every log line, hotcluster's and the workers': text (\"hotcluster: …\", \"[gN wS] …\", \"[gN wS err] …\" for a worker's stderr), or json (one object per line: time, level, msg, and for a worker's line gen, slot, pid, stream; a line that is a JSON object stays one, as \"json\")"},
			&cli.StringFlag{Name: "log-level", Category: "logs", Value: "info", Usage: "`LEVEL`: info, or debug to also log every message a worker sends on its channel"},
			&cli.BoolFlag{Name: "log-time", Category: "logs", Value: true, DefaultText: "on, except on the journal's stream, which stamps lines itself", Usage: "start each text line with its time (RFC 3339, to the millisecond); --log-time=false leaves it out"},
			&cli.StringFlag{Name: "log-file", Category: "logs", Usage: "write the log to `FILE` instead of stderr/stdout (or the journal): hotcluster's lines, and the workers' unless --worker-log-file; rotated by size, reopened on SIGUSR1 (logrotate). Its directory must be one no other user can write, e.g. /var/log/NAME"},
			&cli.StringFlag{Name: "worker-log-file", Category: "logs", Usage: "write the workers' lines to `FILE` (rotated and reopened as --log-file)"},
			&cli.StringFlag{Name: "log-max-size", Category: "logs", Value: "100M", Usage: "rotate a log file once it would pass `SIZE` (1M or more; whole MiB)"},
			&cli.IntFlag{Name: "log-max-files", Category: "logs", Value: logfile.DefaultMaxFiles, Usage: "`N` rotated log files kept beside the current one; 0: all"},
			&cli.BoolFlag{Name: "log-compress", Category: "logs", Usage: "gzip rotated log files"},
			&cli.BoolFlag{Name: "log-journal", Category: "logs", Value: true, Usage: "under systemd (stderr is the journal's stream), write to the journal natively, with HOTCLUSTER_GENERATION, HOTCLUSTER_SLOT, HOTCLUSTER_WORKER_PID and a priority per line (err for stderr); --log-journal=false writes plain lines"},
			&cli.IntFlag{Name: "log-buffer", Category: "logs", Value: logring.DefaultMaxLines, Usage: "`N` lines the master keeps in memory for hotcluster logs (the last of each worker, and its own); 0: none"},
			&cli.StringFlag{Name: "log-buffer-size", Category: "logs", Value: "4M", Usage: "bound of those lines' memory, `SIZE` (1M or more)"},
		}),
		Before: loadConfigFile,
		Action: runAction,
	}
}

func parseRun(c *cli.Context) (*master.Config, error) {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return nil, usagef("no worker command: give it after --, e.g. hotcluster run --listen :8080 -- ./server")
	}
	var rc master.Config
	p := &rc.Pool
	p.Command.Args = argv
	p.Workers = c.Int("workers")
	if !c.IsSet("workers") {
		p.Workers, rc.WorkersFrom = defaultWorkers()
	}
	if p.Workers < 1 {
		return nil, usagef("--workers %d: want 1 or more", p.Workers)
	}
	if p.Workers > control.MaxWorkers {
		return nil, usagef("--workers %d: more than %d; a typo would fork that many processes", p.Workers, control.MaxWorkers)
	}
	var err error
	if p.Ready, err = workers.ParseReadyMode(c.String("ready")); err != nil {
		return nil, usagef("--ready: %w", err)
	}
	p.ReadyDelay, p.ReadyTimeout, p.DrainTimeout = c.Duration("ready-delay"), c.Duration("ready-timeout"), c.Duration("drain-timeout")
	for name, d := range map[string]time.Duration{"--ready-delay": p.ReadyDelay, "--ready-timeout": p.ReadyTimeout, "--drain-timeout": p.DrainTimeout} {
		if d <= 0 {
			return nil, usagef("%s %s: want a positive duration such as 30s", name, d)
		}
	}
	if p.Rollout, err = workers.ParseRollout(c.String("rollout")); err != nil {
		return nil, usagef("--%w", err)
	}
	if p.StopSignal, err = parseSignal(c.String("stop-signal")); err != nil {
		return nil, usagef("--stop-signal: %w", err)
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
			return nil, usagef("--dir %s: %w", dir, err)
		}
	}
	if p.IPC, err = workers.ParseIPCMode(c.String("ipc")); err != nil {
		return nil, usagef("--%w", err)
	}
	if p.Intercept, err = workers.ParseInterceptMode(c.String("intercept-bind")); err != nil {
		return nil, usagef("--%w", err)
	}
	switch h := c.String("handoff"); h {
	case "auto":
	case "shared":
		rc.Sockets.Shared = true
	default:
		return nil, usagef("--handoff %q: want auto or shared", h)
	}
	if rc.Sockets.Balance, err = handoff.ParseBalance(c.String("balance")); err != nil {
		return nil, usagef("--%w", err)
	}
	if rc.Sockets.Balance == handoff.BalanceSticky && rc.Sockets.Shared {
		return nil, usagef("--balance sticky needs a socket per worker, which --handoff shared does not give: leave --handoff at auto, or use --balance hash")
	}
	rc.Sockets.QuietTimeout = c.Duration("quiet-timeout")
	if rc.Sockets.QuietTimeout <= 0 {
		return nil, usagef("--quiet-timeout %s: want a positive duration such as 5s", rc.Sockets.QuietTimeout)
	}
	rc.Sockets.Nagle = !c.Bool("nodelay")
	for _, l := range c.StringSlice("listen") {
		spec, err := handoff.ParseSpec(l)
		if err != nil {
			return nil, usagef("--%w", err)
		}
		rc.Sockets.Specs = append(rc.Sockets.Specs, spec)
	}
	if err := parseRescue(&rc, c.StringSlice("rescue")); err != nil {
		return nil, err
	}
	if u := c.String("user"); u != "" {
		if p.Credential, err = lookupCredential(u); err != nil {
			return nil, err
		}
	}
	if err := parseLog(c, &rc.Log); err != nil {
		return nil, err
	}
	rc.Name = c.String("name")
	if rc.Name == "" {
		rc.Name = defaultName(argv)
	} else if err := control.CheckName(rc.Name); err != nil {
		return nil, usagef("--name: %w", err)
	}
	rc.Control = controlPath(rc.Name, c.String("control"))
	rc.Log.Name = rc.Name
	if m := c.String("max-memory"); m != "" {
		if rc.MaxMemory, err = parseSize(m); err != nil {
			return nil, usagef("--max-memory: %w", err)
		}
	}
	if a := c.String("metrics"); a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, usagef("--metrics %q: want HOST:PORT, e.g. 127.0.0.1:9100", a)
		}
		rc.Metrics = a
	}
	switch cg := c.String("cgroup"); cg {
	case "auto":
	case "off":
		rc.NoCgroup = true
	default:
		return nil, usagef("--cgroup %q: want auto or off", cg)
	}
	if a := c.String("health"); a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, usagef("--health %q: want HOST:PORT, e.g. :8081 or 127.0.0.1:8081", a)
		}
		rc.Health = a
	}
	if rc.ShutdownDelay = c.Duration("shutdown-delay"); rc.ShutdownDelay < 0 {
		return nil, usagef("--shutdown-delay %s: want 0 or a positive duration such as 5s", rc.ShutdownDelay)
	}
	rc.PIDFile = c.String("pidfile")
	rc.UpgradeTimeout = c.Duration("upgrade-timeout")
	if rc.UpgradeTimeout < 0 {
		return nil, usagef("--upgrade-timeout %s: want a positive duration", rc.UpgradeTimeout)
	}
	if rc.UpgradeTimeout == 0 {
		rc.UpgradeTimeout = p.ReadyTimeout + rc.Sockets.QuietTimeout
	}
	if c.IsSet("watch") || c.IsSet("build") {
		rc.Dev = &devloop.Config{Build: c.String("build"), Command: argv, Dir: p.Dir}
		rc.Watch = watch.Config{Paths: c.StringSlice("watch"), Ignore: c.StringSlice("ignore"), Debounce: c.Duration("debounce")}
		if len(rc.Watch.Paths) == 0 {
			rc.Watch.Paths = []string{"."}
		}
		if p.Dir != "" {
			for i, w := range rc.Watch.Paths {
				if !filepath.IsAbs(w) {
					rc.Watch.Paths[i] = filepath.Join(p.Dir, w)
				}
			}
		}
		if e := c.String("ext"); e != "" {
			rc.Watch.Exts = strings.Split(e, ",")
		}
		if c.Duration("debounce") <= 0 {
			return nil, usagef("--debounce %s: want a positive duration such as 100ms", c.Duration("debounce"))
		}
		if err := rc.Dev.Check(); err != nil {
			return nil, &usageError{err}
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

// useColor: colours allowed, unless NO_COLOR is set (no-color.org); the
// log paints only the outputs that are terminals.
func useColor() bool {
	_, set := os.LookupEnv("NO_COLOR")
	return !set
}

// useColorOn: colours on f, a terminal, unless NO_COLOR is set.
func useColorOn(f *os.File) bool {
	return useColor() && devloop.IsTerminal(int(f.Fd()))
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
	cfg, err := parseRun(c)
	if err != nil {
		return err
	}
	// From here on the master writes its log: a reader that goes away or
	// stops reading must neither kill it (SIGPIPE) nor stall it.
	signals.SurviveBrokenPipe()
	cfg.Log.Color = useColor()
	log, err := logs.Open(cfg.Log)
	if err != nil {
		return logFileError(err)
	}
	cfg.Logs = log
	cfg.Version = fullVersion()
	if args, _ := c.App.Metadata[argsKey].([]string); len(args) > 0 {
		cfg.Reparse = func() (*master.Config, error) { return reparseRun(args) }
	}
	err = serve(c.Context, cfg)
	if err != nil {
		// Through the log: a plain write to a stalled stderr would keep
		// the master from exiting.
		log.Final(err)
		err = &reportedError{err}
	}
	log.Close(logFlushTimeout)
	return err
}

// logFileError makes a log file that cannot be used safely, or at all, a
// usage error that says what to do.
func logFileError(err error) error {
	var ue *safedir.UnsafeError
	if errors.As(err, &ue) {
		return usagef("%w (use a directory of its own, such as /var/log/NAME: LogsDirectory=NAME under systemd)", err)
	}
	return &usageError{err}
}

// serve makes and runs the master; what New refuses because of the command
// line (an address in use, a path another user could change, an instance
// of the same name, --balance sticky where it cannot be had) is a usage
// error.
func serve(ctx context.Context, cfg *master.Config) error {
	m, err := master.New(*cfg)
	if err != nil {
		var ue *safedir.UnsafeError
		var se *handoff.StickyError
		switch {
		case errors.Is(err, control.ErrInUse), errors.As(err, &ue), errors.Is(err, master.ErrRolloutNeedsSlots), errors.As(err, &se):
			return &usageError{err}
		}
		return occupiedError(ctx, err, cfg.Control)
	}
	return m.Run(ctx)
}

// parseLog reads the log flags into lc.
func parseLog(c *cli.Context, lc *logs.Config) error {
	switch f := c.String("log-format"); f {
	case "text":
	case "json":
		lc.Format = logs.JSON
	default:
		return usagef("--log-format %q: want text or json", f)
	}
	switch l := c.String("log-level"); l {
	case "info":
	case "debug":
		lc.Level = slog.LevelDebug
	default:
		return usagef("--log-level %q: want info or debug", l)
	}
	if c.IsSet("log-time") {
		on := c.Bool("log-time")
		lc.Time = &on
	}
	lc.File, lc.WorkerFile = c.String("log-file"), c.String("worker-log-file")
	for name, p := range map[string]string{"--log-file": lc.File, "--worker-log-file": lc.WorkerFile} {
		if p != "" && (strings.HasSuffix(p, "/") || p == "-") {
			return usagef("%s %q: want a file path such as /var/log/app/app.log", name, p)
		}
	}
	if lc.File != "" && filepath.Clean(lc.File) == filepath.Clean(lc.WorkerFile) {
		return usagef("--worker-log-file is --log-file: give --log-file alone to have both in one file")
	}
	size, err := parseSize(c.String("log-max-size"))
	if err != nil {
		return usagef("--log-max-size: %w", err)
	}
	lc.Rotate.MaxSize = int64(size)
	switch n := c.Int("log-max-files"); {
	case n < 0:
		return usagef("--log-max-files %d: want 0 (keep all) or more", n)
	case n == 0:
		lc.Rotate.MaxFiles = -1
	default:
		lc.Rotate.MaxFiles = n
	}
	lc.Rotate.Compress = c.Bool("log-compress")
	lc.NoJournal = !c.Bool("log-journal")
	switch n := c.Int("log-buffer"); {
	case n < 0:
		return usagef("--log-buffer %d: want 0 (keep none) or more lines", n)
	case n == 0:
		lc.NoRing = true
	default:
		lc.Ring.MaxLines = n
	}
	bsize, err := parseSize(c.String("log-buffer-size"))
	if err != nil {
		return usagef("--log-buffer-size: %w", err)
	}
	lc.Ring.MaxBytes = int64(bsize)
	return nil
}

// parseRescue reads --rescue: MODE for every listener, LISTENER=MODE for
// one. A LISTENER must name a --listen; listeners from systemd are only
// known to the master, which checks them (openRescue).
func parseRescue(rc *master.Config, values []string) error {
	rc.Rescue = rescue.HTTP
	for _, v := range values {
		name, mode, one := strings.Cut(v, "=")
		if !one {
			mode = name
		}
		m, err := rescue.ParseMode(mode)
		if err != nil {
			return usagef("--%w", err)
		}
		if !one {
			rc.Rescue = m
			continue
		}
		if name == "" {
			return usagef("--rescue %q: empty listener name before '='", v)
		}
		if rc.RescueFor == nil {
			rc.RescueFor = make(map[string]rescue.Mode)
		}
		rc.RescueFor[name] = m
	}
	if len(rc.Sockets.Specs) == 0 {
		return nil
	}
	var names []string
	for _, s := range rc.Sockets.Specs {
		names = append(names, s.Name)
	}
	for name := range rc.RescueFor {
		if !slices.Contains(names, name) {
			return usagef("--rescue %s=…: no --listen is named %q (the listeners: %s)", name, name, strings.Join(names, ", "))
		}
	}
	return nil
}
