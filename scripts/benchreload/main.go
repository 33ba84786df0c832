// Command benchreload measures what a reload costs under load: it runs
// examples/hello under hotcluster, sends SIGHUP to the master at a fixed
// interval while internal/loadgen keeps concurrent clients busy on loopback,
// and reports failed requests, latency, the stall around each reload,
// throughput against the same workers started without hotcluster, and the
// master's memory and CPU. Run it through scripts/bench-reload, which builds
// the binaries it needs.
//
// Every process the driver starts gets its own process group and is stopped
// by PID on the way out (SIGTERM, then SIGKILL to its group after a grace
// period). Workers are started by the master, not by the driver; any worker
// seen answering that outlives its master is reported and killed by PID.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// bench holds the settings and every server the driver started.
type bench struct {
	ctx                                context.Context
	hotcluster, hello, logDir          string
	workers, clients, rounds, upgrades int
	duration, reloadEvery, stallWindow time.Duration
	warmup, readyTimeout, stopGrace    time.Duration
	idleFor, roundDuration             time.Duration
	modes                              []connMode
	// rollouts are the --rollout values the reload and rss scenarios run
	// with ("all": the whole generation, hotcluster's default).
	rollouts []string
	// ballast is hello -ballast for the rss scenario, in MiB.
	ballast int
	// helloFlags and hotclusterFlags are added to every hello and every
	// hotcluster run (a logging load: -access-log, --log-file …).
	helloFlags, hotclusterFlags []string
	// sources are the measured loads' client source addresses
	// (loadgen.Config.Sources; -sources).
	sources []netip.Addr
	servers []*server
	ports   map[int]bool // every port handed out by freshAddr
}

type connMode struct {
	name      string
	keepAlive bool
}

// short names the mode in log file names.
func (m connMode) short() string {
	if m.keepAlive {
		return "keepalive"
	}
	return "new"
}

var allModes = []connMode{{"new per request", false}, {"keep-alive", true}}

func (b *bench) track(s *server) { b.servers = append(b.servers, s) }

// stopAll stops every server not stopped yet; proc.stop is idempotent.
func (b *bench) stopAll() error {
	var errs []error
	for i := len(b.servers) - 1; i >= 0; i-- {
		errs = append(errs, b.servers[i].stop(b.stopGrace, b.hello))
	}
	return errors.Join(errs...)
}

func main() { os.Exit(run()) }

func run() int {
	var (
		b         bench
		out       = flag.String("out", "", "also write the Markdown report to this `file`")
		jsonOut   = flag.String("json", "", "also write the results, with the load's timelines, as JSON to this `file`")
		command   = flag.String("command", "", "command line to print in the report (default: this program's arguments)")
		only      = flag.String("scenarios", "reload,upgrade,steady", "comma-separated scenarios to run: reload, latency (reload latency under a light load: 1 client), upgrade (SIGUSR2 binary upgrades), steady, footprint (the master's RSS and CPU without load), rss (the workers' summed RSS during one reload, per -rollout, with hello -ballast)")
		modes     = flag.String("modes", "new,keepalive", "comma-separated connection modes: new (a connection per request), keepalive")
		skipPlain = flag.Bool("skip-plain", false, "skip the reload scenarios with hello -plain-shutdown")
		helloF    = flag.String("hello-flags", "", "flags added to every hello, e.g. '-access-log' or '-log-rate 20000' for reloads under a logging load")
		hotF      = flag.String("hotcluster-flags", "", "flags added to every hotcluster run, e.g. '--log-format json'")
		rollouts  = flag.String("rollout", "all", "comma-separated hotcluster --rollout values the reload and rss scenarios run with, e.g. all,1,50%")
		sources   = flag.Int("sources", 0, "clients of the measured loads dial from this many loopback addresses, 127.0.0.2 and up (for --balance sticky); 0: 127.0.0.1")
	)
	flag.StringVar(&b.hotcluster, "hotcluster", "", "path of the hotcluster binary (required for the reload and steady scenarios)")
	flag.StringVar(&b.hello, "hello", "", "path of the examples/hello binary (required)")
	flag.StringVar(&b.logDir, "logdir", "", "directory for the processes' logs (default: a new temporary directory, kept)")
	flag.IntVar(&b.workers, "workers", runtime.NumCPU(), "workers per generation, and bare hello processes")
	flag.IntVar(&b.clients, "clients", 32, "concurrent clients")
	flag.DurationVar(&b.duration, "duration", 20*time.Second, "load duration of each reload scenario")
	flag.DurationVar(&b.reloadEvery, "reload-every", 2*time.Second, "interval between SIGHUPs, and between SIGUSR2s (upgrade scenario; later if the previous old master has not exited yet)")
	flag.IntVar(&b.upgrades, "upgrades", 10, "master upgrades (SIGUSR2) per connection mode in the upgrade scenario")
	flag.DurationVar(&b.stallWindow, "stall-window", time.Second, "after each SIGHUP, the window whose max latency is the reload's stall")
	flag.DurationVar(&b.warmup, "warmup", time.Second, "warm-up load before measuring a server (steady state: in the round's connection mode, the same for hotcluster and bare, discarded)")
	flag.DurationVar(&b.readyTimeout, "ready-timeout", 30*time.Second, "how long a started server may take to answer")
	flag.DurationVar(&b.stopGrace, "stop-grace", 30*time.Second, "after SIGTERM, how long a process may take before SIGKILL")
	flag.DurationVar(&b.idleFor, "idle", 3*time.Second, "how long to measure the master's CPU use without load")
	flag.IntVar(&b.ballast, "ballast", 64, "rss scenario: MiB each worker allocates and touches (hello -ballast)")
	flag.IntVar(&b.rounds, "rounds", 3, "steady-state rounds per connection mode; each measures hotcluster and bare hellos one after the other on the same port, alternating which goes first")
	flag.DurationVar(&b.roundDuration, "round-duration", 5*time.Second, "load duration of each steady-state round")
	flag.Parse()
	b.helloFlags, b.hotclusterFlags = strings.Fields(*helloF), strings.Fields(*hotF)
	for r := range strings.SplitSeq(*rollouts, ",") {
		b.rollouts = append(b.rollouts, strings.TrimSpace(r))
	}
	if *sources < 0 || *sources > 250 {
		fmt.Fprintln(os.Stderr, "benchreload: -sources: want 0 to 250")
		return 2
	}
	for i := range *sources {
		b.sources = append(b.sources, netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)}))
	}

	if err := b.validate(*modes); err != nil {
		fmt.Fprintf(os.Stderr, "benchreload: %v\n", err)
		return 2
	}
	cmdline := *command
	if cmdline == "" {
		cmdline = shellQuote(os.Args)
	}
	if b.logDir == "" {
		dir, err := os.MkdirTemp("", "benchreload-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchreload: %v\n", err)
			return 1
		}
		b.logDir = dir
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	b.ctx = ctx

	rep := &report{bench: &b, command: cmdline, started: time.Now()}
	rep.machine = describeMachine()
	failed := false
	for name := range strings.SplitSeq(*only, ",") {
		if ctx.Err() != nil {
			break
		}
		switch strings.TrimSpace(name) {
		case "reload":
			for _, c := range reloadCases(!*skipPlain, b.modes, b.rollouts) {
				if ctx.Err() != nil {
					break
				}
				logf("reload scenario: %s", c.label())
				o := b.runReload(c)
				if o.err != nil || o.stopErr != nil {
					failed = true
					logf("  error: %v", errors.Join(o.err, o.stopErr))
				}
				rep.reloads = append(rep.reloads, o)
			}
		case "latency":
			c := reloadCase{mode: allModes[0], handoff: "auto", light: true}
			logf("reload latency: %s", c.label())
			o := b.runReload(c)
			if o.err != nil || o.stopErr != nil {
				failed = true
				logf("  error: %v", errors.Join(o.err, o.stopErr))
			}
			rep.reloads = append(rep.reloads, o)
		case "rss":
			for _, r := range b.rollouts {
				if ctx.Err() != nil {
					break
				}
				logf("workers' RSS during a reload: --rollout %s", r)
				o := b.runRSS(r)
				if o.err != nil || o.stopErr != nil {
					failed = true
					logf("  error: %v", errors.Join(o.err, o.stopErr))
				}
				rep.rss = append(rep.rss, o)
			}
		case "footprint":
			logf("master footprint")
			rep.footprint = b.runFootprint()
			if rep.footprint.err != nil || rep.footprint.stopErr != nil {
				failed = true
				logf("  error: %v", errors.Join(rep.footprint.err, rep.footprint.stopErr))
			}
		case "upgrade":
			for _, m := range b.modes {
				if ctx.Err() != nil {
					break
				}
				logf("upgrade scenario: connections %s", m.name)
				o := b.runUpgrade(m)
				if o.err != nil || o.stopErr != nil {
					failed = true
					logf("  error: %v", errors.Join(o.err, o.stopErr))
				}
				rep.upgrades = append(rep.upgrades, o)
			}
		case "steady":
			logf("steady-state throughput")
			rep.steady = b.runSteady()
			if rep.steady.err != nil {
				failed = true
				logf("  error: %v", rep.steady.err)
			}
		default:
			fmt.Fprintf(os.Stderr, "benchreload: unknown scenario %q\n", name)
			failed = true
		}
	}
	if err := b.stopAll(); err != nil {
		failed = true
		rep.cleanup = err
	}
	if ctx.Err() != nil {
		rep.interrupted = true
		failed = true
	}
	text := rep.markdown()
	fmt.Print(text)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "benchreload: %v\n", err)
			failed = true
		}
	}
	if *jsonOut != "" {
		if err := rep.writeJSON(*jsonOut); err != nil {
			fmt.Fprintf(os.Stderr, "benchreload: %v\n", err)
			failed = true
		}
	}
	logf("process logs are in %s", b.logDir)
	if failed {
		return 1
	}
	return 0
}

func (b *bench) validate(modes string) error {
	if b.hello == "" {
		return errors.New("-hello is required")
	}
	for _, p := range []*string{&b.hello, &b.hotcluster} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		// Resolve symlinks so that /proc/PID/exe comparisons hold.
		if abs, err = filepath.EvalSymlinks(abs); err != nil {
			return err
		}
		*p = abs
	}
	for m := range strings.SplitSeq(modes, ",") {
		switch strings.TrimSpace(m) {
		case "new":
			b.modes = append(b.modes, allModes[0])
		case "keepalive":
			b.modes = append(b.modes, allModes[1])
		default:
			return fmt.Errorf("-modes: unknown mode %q: want new or keepalive", m)
		}
	}
	switch {
	case b.workers < 1 || b.clients < 1 || b.clients > loadgen.MaxClients || b.rounds < 1 || b.upgrades < 1 || b.upgrades > 1000:
		return errors.New("-workers, -clients, -rounds and -upgrades must be at least 1 (clients at most 10000, upgrades at most 1000)")
	case b.duration <= 0 || b.reloadEvery <= 0 || b.stallWindow <= 0 || b.warmup <= 0 || b.readyTimeout <= 0 ||
		b.stopGrace <= 0 || b.idleFor <= 0 || b.roundDuration <= 0:
		return errors.New("durations must be positive")
	case b.duration > time.Hour || b.roundDuration > time.Hour:
		return errors.New("durations are capped at 1h")
	}
	return nil
}

// reloadCase is one reload scenario.
type reloadCase struct {
	mode    connMode
	plain   bool   // hello -plain-shutdown: a plain http.Server.Shutdown
	handoff string // hotcluster --handoff
	light   bool   // one client instead of -clients: the reload latency scenario
	rollout string // hotcluster --rollout; "" or "all": the whole generation
}

// rolled reports whether the case replaces a few workers at a time.
func (c reloadCase) rolled() bool { return c.rollout != "" && c.rollout != "all" }

// handoffCell names the handoff, and the rollout if any.
func (c reloadCase) handoffCell() string {
	if c.rolled() {
		return c.handoff + ", --rollout " + c.rollout
	}
	return c.handoff
}

// clients is the number of concurrent clients of the case's load.
func (c reloadCase) clients(b *bench) int {
	if c.light {
		return 1
	}
	return b.clients
}

// connections names the case's connection mode, and its light load.
func (c reloadCase) connections() string {
	if c.light {
		return c.mode.name + ", 1 client"
	}
	return c.mode.name
}

// short names the case in the summary and the charts.
func (c reloadCase) short() string {
	switch {
	case c.light:
		return "reload (SIGHUP), 1 client, " + c.mode.name
	case c.plain && c.handoff == "shared":
		return "reload, plain Shutdown worker, shared socket, " + c.mode.name
	case c.plain && c.rolled():
		return "reload, plain Shutdown worker, --rollout " + c.rollout + ", " + c.mode.name
	case c.plain:
		return "reload, plain Shutdown worker, " + c.mode.name
	case c.rolled():
		return "reload (SIGHUP), --rollout " + c.rollout + ", " + c.mode.name
	}
	return "reload (SIGHUP), " + c.mode.name
}

// key names the case in JSON and in charts.
func (c reloadCase) key() string {
	k := "reload"
	if c.light {
		k = "reload-1client"
	}
	if c.plain {
		k += "-plain-" + c.handoff
	}
	if c.rolled() {
		k += "-rollout" + strings.ReplaceAll(c.rollout, "%", "pct")
	}
	return k + "-" + c.mode.short()
}

func (c reloadCase) worker() string {
	if c.plain {
		return "plain Shutdown"
	}
	return "graceful (default)"
}

func (c reloadCase) label() string {
	return fmt.Sprintf("worker %s, handoff %s, connections %s", c.worker(), c.handoffCell(), c.connections())
}

// reloadCases are the reload scenarios, for each rollout (a shared socket
// cannot roll out: hotcluster refuses it, so that case runs whole only).
func reloadCases(plain bool, modes []connMode, rollouts []string) []reloadCase {
	var cs []reloadCase
	for _, r := range rollouts {
		for _, m := range modes {
			cs = append(cs, reloadCase{mode: m, handoff: "auto", rollout: r})
		}
		if plain {
			for _, h := range []string{"auto", "shared"} {
				if h == "shared" && r != "all" && r != "" {
					continue
				}
				for _, m := range modes {
					cs = append(cs, reloadCase{mode: m, plain: true, handoff: h, rollout: r})
				}
			}
		}
	}
	return cs
}

// reloadOutcome is what one reload scenario measured.
type reloadOutcome struct {
	c                reloadCase
	err, stopErr     error
	res              *loadgen.Result
	hups             int
	gens             seen
	finalGen         int
	stalls           []time.Duration
	preMax           time.Duration
	rss              int64
	cpuLoad, cpuIdle float64
	// hupAt is each SIGHUP's offset from res.Start. newGen is, per SIGHUP,
	// the time until the first answer from the generation it started;
	// oldGone the time until the last worker of the older generations
	// exited (reaped by the master); -1 when not seen.
	hupAt, newGen, oldGone []time.Duration
}

func (b *bench) runReload(c reloadCase) (o *reloadOutcome) {
	o = &reloadOutcome{c: c}
	name := fmt.Sprintf("reload-%d", len(b.servers)+1)
	var helloArgs []string
	if c.plain {
		helloArgs = []string{"-plain-shutdown"}
	}
	var flags []string
	if c.handoff != "auto" {
		flags = []string{"--handoff", c.handoff}
	}
	if c.rolled() {
		flags = append(flags, "--rollout", c.rollout)
	}
	s, err := b.startWarm(name, flags, helloArgs)
	if s != nil {
		defer func() { o.stopErr = s.stop(b.stopGrace, b.hello) }()
	}
	if err != nil {
		o.err = err
		return o
	}
	master := s.master.PID()
	cpu, err := startCPU(master)
	if err != nil {
		o.err = err
		return o
	}

	gw := newGenWatcher(master)
	gwStopped := false
	stopWatch := func() {
		if !gwStopped {
			gwStopped = true
			gw.stop()
		}
	}
	defer stopWatch()
	obs := newObserver(c.clients(b))
	type loadResult struct {
		r   *loadgen.Result
		err error
	}
	loadDone := make(chan loadResult, 1)
	go func() {
		r, err := loadgen.Run(b.ctx, loadgen.Config{
			Addr: s.addr, Clients: c.clients(b), KeepAlive: c.mode.keepAlive, Sources: b.sources,
			Duration: b.duration, OnResponse: obs.observe, BucketLatencies: true,
		})
		loadDone <- loadResult{r, err}
	}()
	t0 := time.Now()
	var hups []time.Time
	for i := 1; ; i++ {
		at := t0.Add(time.Duration(i) * b.reloadEvery)
		if !at.Before(t0.Add(b.duration)) || sleep(b.ctx, time.Until(at)) != nil {
			break
		}
		if err := s.alive(); err != nil {
			o.err = err
			break
		}
		if err := hup(master); err != nil {
			o.err = fmt.Errorf("SIGHUP master %d: %w", master, err)
			break
		}
		hups = append(hups, time.Now())
	}
	lr := <-loadDone // bounded by b.duration
	if lr.err != nil {
		o.err = errors.Join(o.err, lr.err)
		return o
	}
	o.res, o.hups = lr.r, len(hups)
	o.gens = obs.merge()
	maps.Copy(s.pids, o.gens.pids)
	if o.cpuLoad, err = cpu.percent(); err != nil {
		o.err = errors.Join(o.err, err)
	}
	for _, h := range hups {
		off := h.Sub(o.res.Start)
		o.stalls = append(o.stalls, o.res.Window(off, off+b.stallWindow).MaxLatency)
	}
	o.preMax = o.res.Window(0, min(b.reloadEvery, b.duration)).MaxLatency
	if err := s.alive(); err != nil {
		o.err = errors.Join(o.err, err)
		return o
	}

	// The master without load: let the last turnover finish, then measure.
	if cpu, err = startCPU(master); err == nil {
		if err = sleep(b.ctx, b.idleFor); err == nil {
			o.cpuIdle, err = cpu.percent()
		}
	}
	if err == nil {
		o.rss, err = rssKiB(master)
	}
	if err != nil {
		o.err = errors.Join(o.err, err)
	}
	// The last turnover has had b.idleFor to finish.
	stopWatch()
	first := obs.firstSeen()
	for k, h := range hups {
		// Generation 1 serves before the first SIGHUP; SIGHUP k starts
		// generation k+1, since each turnover ends well within b.reloadEvery
		// (otherwise SIGHUPs coalesce and the next ones show as not seen).
		gen := k + 2
		o.hupAt = append(o.hupAt, h.Sub(o.res.Start))
		newGen, oldGone := time.Duration(-1), time.Duration(-1)
		if at, ok := first[gen]; ok && at.After(h) {
			newGen = at.Sub(h)
		}
		if at, ok := gw.lastGone(gen-1, h); ok {
			oldGone = at.Sub(h)
		}
		o.newGen = append(o.newGen, newGen)
		o.oldGone = append(o.oldGone, oldGone)
	}
	probe := newObserver(1)
	if r, err := loadgen.Run(b.ctx, loadgen.Config{Addr: s.addr, MaxRequests: 1, Timeout: 2 * time.Second, OnResponse: probe.observe}); err == nil && r.Failures == 0 {
		o.finalGen = probe.merge().maxGen
	}
	return o
}

// steadyOutcome compares throughput with and without hotcluster.
type steadyOutcome struct {
	err  error
	addr string // the one port every steady-state measurement used
	// primed is the port's TIME_WAIT count after priming, -1 if not primed.
	primed int
	rows   []steadyRow
}

type steadyRow struct {
	mode      connMode
	round     int
	hotFirst  bool
	hot, bare steadySample
}

// steadySample is one measurement of one setup.
type steadySample struct {
	rps      float64 // successful requests per second
	failed   int
	warmRPS  float64 // the discarded warm-up's
	timeWait int     // TIME_WAIT sockets on the port as the measurement started; -1 if unknown
}

// runSteady measures hotcluster and the bare hellos on one port, fresh for
// this section, never both at once: a port's TIME_WAIT backlog (tens of
// thousands of sockets with a connection per request) slows new connections
// to it, differently from one port to another. Each round and mode starts one
// setup, warms it up, measures it and stops it, then does the same with the
// other; which goes first alternates from round to round (ABBA), so that
// drift and the backlog left by the previous measurement affect both alike.
func (b *bench) runSteady() (o steadyOutcome) {
	addr, port, err := b.freshAddr()
	if err != nil {
		o.err = err
		return o
	}
	o.addr, o.primed = addr, -1
	// Keep-alive alone opens too few connections for a backlog to matter.
	if slices.ContainsFunc(b.modes, func(m connMode) bool { return !m.keepAlive }) {
		if o.primed, err = b.primePort(addr, port); err != nil {
			o.err = err
			return o
		}
		logf("  primed %s: %d sockets in TIME_WAIT", addr, o.primed)
	}
	for round := 1; round <= b.rounds; round++ {
		for _, m := range b.modes {
			row := steadyRow{mode: m, round: round, hotFirst: round%2 == 1}
			order := []bool{true, false} // hotcluster?
			if !row.hotFirst {
				order = []bool{false, true}
			}
			for _, hot := range order {
				sample, err := b.measureSteady(hot, addr, port, m, round)
				if err != nil {
					o.err = err
					return o
				}
				if hot {
					row.hot = sample
				} else {
					row.bare = sample
				}
			}
			logf("  %s round %d (%s first): hotcluster %.0f req/s, bare %.0f req/s (warm-up %.0f / %.0f req/s; TIME_WAIT at start %d / %d)",
				m.name, round, row.firstName(), row.hot.rps, row.bare.rps, row.hot.warmRPS, row.bare.warmRPS, row.hot.timeWait, row.bare.timeWait)
			o.rows = append(o.rows, row)
		}
	}
	return o
}

// primeSteps bounds primePort.
const primeSteps = 10

// primePort sends new-connection load for up to primeSteps times b.warmup to
// a throwaway server in the driver on addr, until the port's TIME_WAIT count
// grows by at most 1 % in a step, then stops that server. A fresh port's
// backlog takes longer than one warm-up to fill; without this, the first
// measurement would start with a smaller one than the others.
func (b *bench) primePort(addr string, port int) (int, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return -1, err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("prime\n")) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tw := -1
	for range primeSteps {
		if _, err = loadgen.Run(b.ctx, loadgen.Config{Addr: addr, Clients: b.clients, Duration: b.warmup}); err != nil {
			break
		}
		if err = b.ctx.Err(); err != nil {
			break
		}
		var n portSockets
		if n, err = socketsOn(port); err != nil {
			break
		}
		grew := n.timeWait - tw
		tw = n.timeWait
		if grew*100 <= tw {
			break
		}
	}
	_ = srv.Close() // closes the listener and every connection
	<-served        // returns as soon as the listener is closed
	if err != nil {
		return -1, err
	}
	return tw, waitRefused(b.ctx, addr, killWait)
}

func (r steadyRow) firstName() string {
	if r.hotFirst {
		return "hotcluster"
	}
	return "bare"
}

// measureSteady starts hotcluster (hot) or the bare hellos on addr once
// nothing else accepts there, waits until it answers, warms it up for
// b.warmup in mode m, measures it for b.roundDuration and stops it.
func (b *bench) measureSteady(hot bool, addr string, port int, m connMode, round int) (sample steadySample, err error) {
	if err := waitRefused(b.ctx, addr, killWait); err != nil {
		return sample, err
	}
	var s *server
	if hot {
		s, err = b.startHotcluster(fmt.Sprintf("steady-%d-%s-hotcluster", round, m.short()), addr, port, nil, nil)
	} else {
		s, err = b.startBare(fmt.Sprintf("steady-%d-%s-bare", round, m.short()), addr, port)
	}
	if s != nil {
		// Stop it before the other setup starts on the same port.
		defer func() { err = errors.Join(err, s.stop(b.stopGrace, b.hello)) }()
	}
	if err != nil {
		return sample, err
	}
	warm, err := b.waitServing(s, m)
	if err != nil {
		return sample, err
	}
	sample.warmRPS = warm.Throughput()
	sample.timeWait = -1
	if n, err := socketsOn(port); err == nil {
		sample.timeWait = n.timeWait
	}
	r, err := loadgen.Run(b.ctx, loadgen.Config{Addr: addr, Clients: b.clients, KeepAlive: m.keepAlive, Sources: b.sources, Duration: b.roundDuration})
	if err != nil {
		return sample, err
	}
	if err := b.ctx.Err(); err != nil {
		return sample, err
	}
	sample.rps, sample.failed = r.Throughput(), r.Failures
	return sample, s.alive()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchreload: "+format+"\n", args...)
}
