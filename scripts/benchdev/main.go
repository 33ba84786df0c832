// Command benchdev measures the development loop: from the write of a
// source file to the first answer of the new build, for hotcluster's
// development mode (--watch/--build) and for air (github.com/air-verse/air)
// on the same generated app, while internal/loadgen keeps clients busy on
// loopback and counts every failed request. Run it through scripts/bench-dev,
// which builds hotcluster and this driver and installs air into a temporary
// directory.
//
// Every process the driver starts (the tools, and the go build that warms
// the cache) gets its own process group and is stopped by PID on the way out
// (SIGTERM, then SIGKILL to its group after a grace period). App processes
// are started by the tools, not by the driver; any app process seen
// answering that outlives its tool is reported and killed by PID, after
// checking its command line.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// bench holds the settings of a run.
type bench struct {
	ctx                       context.Context
	hotcluster, air, logDir   string
	airVersion, runID         string
	edits, workers, clients   int
	boot, gap, poll           time.Duration
	editTimeout, readyTimeout time.Duration
	stopGrace                 time.Duration
}

// scenario is one tool in one configuration.
type scenario struct {
	name string // hotcluster, air, air-delay1
	tool string // hotcluster or air
	// airDelay is air's build.delay in ms. air cannot be given 0: its
	// config loader keeps the default (1000) for a zero value, so "no
	// delay" is 1 ms.
	airDelay int
}

func (s scenario) label() string {
	if s.tool == "air" {
		return fmt.Sprintf("air (delay = %d ms)", s.airDelay)
	}
	return "hotcluster"
}

var allScenarios = map[string]scenario{
	"hotcluster": {name: "hotcluster", tool: "hotcluster"},
	"air":        {name: "air", tool: "air", airDelay: 1000},
	"air-delay1": {name: "air-delay1", tool: "air", airDelay: 1},
}

func main() { os.Exit(run()) }

func run() int {
	var (
		b       bench
		out     = flag.String("out", "", "also write the Markdown report to this `file`")
		jsonOut = flag.String("json", "", "also write the results, with the load's timelines, as JSON to this `file`")
		command = flag.String("command", "", "command line to print in the report (default: this program's arguments)")
		tools   = flag.String("tools", "hotcluster,air,air-delay1", "comma-separated scenarios, in order: hotcluster, air (its default delay = 1000 ms), air-delay1 (delay = 1 ms, air's smallest)")
	)
	flag.StringVar(&b.hotcluster, "hotcluster", "", "path of the hotcluster binary (required for the hotcluster scenario)")
	flag.StringVar(&b.air, "air", "", "path of the air binary (required for the air scenarios)")
	flag.StringVar(&b.airVersion, "air-version", "", "air's version, for the report")
	flag.StringVar(&b.logDir, "logdir", "", "directory for the apps, logs and build outputs (default: a new temporary directory, kept)")
	flag.IntVar(&b.edits, "edits", 20, "edits (rebuilds and swaps) per scenario")
	flag.IntVar(&b.workers, "workers", 2, "hotcluster --workers")
	flag.IntVar(&b.clients, "clients", 8, "concurrent clients of the background load, a new connection per request")
	flag.DurationVar(&b.boot, "boot", 300*time.Millisecond, "the app's start-up time (it sleeps this long before it serves)")
	flag.DurationVar(&b.gap, "gap", time.Second, "pause after an edit's new build answered (and its build time is known) before the next edit")
	flag.DurationVar(&b.poll, "poll", 5*time.Millisecond, "interval between the probes (GET /, a new connection each) after an edit")
	flag.DurationVar(&b.editTimeout, "edit-timeout", 30*time.Second, "how long an edit may take to be served")
	flag.DurationVar(&b.readyTimeout, "ready-timeout", time.Minute, "how long a started tool may take to serve version 1")
	flag.DurationVar(&b.stopGrace, "stop-grace", 15*time.Second, "after SIGTERM, how long a tool may take before SIGKILL")
	flag.Parse()

	scs, err := b.validate(*tools)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchdev: %v\n", err)
		return 2
	}
	cmdline := *command
	if cmdline == "" {
		cmdline = shellQuote(os.Args)
	}
	if b.logDir == "" {
		if b.logDir, err = os.MkdirTemp("", "benchdev-"); err != nil {
			fmt.Fprintf(os.Stderr, "benchdev: %v\n", err)
			return 1
		}
	}
	b.runID = fmt.Sprintf("benchdev-%d-%d", os.Getpid(), time.Now().UnixNano())
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	b.ctx = ctx

	rep := &report{bench: &b, command: cmdline, started: time.Now(), machine: describeMachine()}
	failed := false
	for _, sc := range scs {
		if ctx.Err() != nil {
			break
		}
		logf("scenario %s", sc.label())
		o := b.runScenario(sc)
		if o.err != nil || o.stopErr != nil {
			failed = true
			logf("  error: %v", errors.Join(o.err, o.stopErr))
		}
		rep.outcomes = append(rep.outcomes, o)
	}
	if ctx.Err() != nil {
		rep.interrupted = true
		failed = true
	}
	text := rep.markdown()
	fmt.Print(text)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "benchdev: %v\n", err)
			failed = true
		}
	}
	if *jsonOut != "" {
		if err := rep.writeJSON(*jsonOut); err != nil {
			fmt.Fprintf(os.Stderr, "benchdev: %v\n", err)
			failed = true
		}
	}
	logf("apps and logs are in %s", b.logDir)
	if failed {
		return 1
	}
	return 0
}

func (b *bench) validate(tools string) ([]scenario, error) {
	var scs []scenario
	for name := range strings.SplitSeq(tools, ",") {
		sc, ok := allScenarios[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("-tools: unknown scenario %q: want hotcluster, air or air-delay1", name)
		}
		scs = append(scs, sc)
	}
	for _, sc := range scs {
		p := &b.hotcluster
		if sc.tool == "air" {
			p = &b.air
		}
		if *p == "" {
			return nil, fmt.Errorf("scenario %s needs -%s", sc.name, sc.tool)
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, err
		}
		*p = abs
	}
	if _, err := exec.LookPath("go"); err != nil {
		return nil, errors.New("go is not in PATH; both tools build the app with it")
	}
	switch {
	case b.edits < 1 || b.edits > 1000:
		return nil, errors.New("-edits: want 1..1000")
	case b.workers < 1 || b.clients < 1 || b.clients > loadgen.MaxClients:
		return nil, errors.New("-workers and -clients must be at least 1 (clients at most 10000)")
	case b.boot < 0 || b.gap < 0:
		return nil, errors.New("-boot and -gap must not be negative")
	case b.poll <= 0 || b.editTimeout <= 0 || b.readyTimeout <= 0 || b.stopGrace <= 0:
		return nil, errors.New("-poll, -edit-timeout, -ready-timeout and -stop-grace must be positive")
	case b.editTimeout > 5*time.Minute || b.readyTimeout > 10*time.Minute || b.gap > time.Minute:
		return nil, errors.New("-edit-timeout is capped at 5m, -ready-timeout at 10m, -gap at 1m")
	}
	return scs, nil
}

// editResult is what one edit measured.
type editResult struct {
	version int
	// latency is from the rename of main.go to the first answer of the new
	// version; 0 if it never came.
	latency time.Duration
	// build is the build's own time, -1 when unknown; builds counts the
	// builds that ran for this edit.
	build  time.Duration
	builds int
	// readyIn is hotcluster's own "gen K ready in X" (from the end of the
	// change burst), -1 when not applicable.
	readyIn        time.Duration
	probes, refuse int // probes sent, and refused among them
	// closed is from the first refused probe to the new answer (0 if no
	// probe was refused): how long the port was closed during the swap, to
	// the probe interval.
	closed time.Duration
	wrote  time.Time
	err    error
}

// outcome is what one scenario measured.
type outcome struct {
	sc           scenario
	argv         []string
	config       string // air's .air.toml
	warmBuild    time.Duration
	edits        []editResult
	load         *loadgen.Result
	pids         int
	badBodies    int
	err, stopErr error
}

func (b *bench) runScenario(sc scenario) (o *outcome) {
	o = &outcome{sc: sc}
	dir := filepath.Join(b.logDir, "scenario-"+sc.name)
	a, err := newApp(filepath.Join(dir, "app"))
	if err != nil {
		o.err = err
		return o
	}
	// Warm the build cache: the standard library and this app's version 1,
	// the same for every tool.
	if o.warmBuild, err = b.goBuild(a.dir, filepath.Join(dir, "warm-build")); err != nil {
		o.err = err
		return o
	}
	port, err := freePort()
	if err != nil {
		o.err = err
		return o
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	appArgs := []string{"-boot", b.boot.String(), "-id", b.runID}

	var times buildTimes
	switch sc.tool {
	case "hotcluster":
		o.argv = []string{b.hotcluster, "run", "--watch", a.dir, "--dir", a.dir, "--ext", ".go",
			"--build", "go build -o {out} .", "--listen", "web=" + addr, "--workers", strconv.Itoa(b.workers),
			"--", "{out}"}
		o.argv = append(o.argv, appArgs...)
	case "air":
		if o.config, times, err = writeAirConfig(dir, a.dir, sc.airDelay, append([]string{"-addr", addr}, appArgs...)); err != nil {
			o.err = err
			return o
		}
		o.argv = []string{b.air, "-c", ".air.toml"}
	}
	if err := b.ctx.Err(); err != nil {
		o.err = err
		return o
	}
	p, err := startProc(sc.name, dir, a.dir, o.argv)
	if err != nil {
		o.err = err
		return o
	}
	if sc.tool == "hotcluster" {
		times = &hotclusterLog{path: p.LogPath}
	}
	pids := map[int]bool{}
	defer func() {
		o.pids = len(pids)
		o.stopErr = errors.Join(p.Stop(b.stopGrace), reapLeftovers(pids, b.runID, killWait))
	}()

	first, err := b.waitVersion(p, addr, 1, time.Now().Add(b.readyTimeout), pids)
	if err != nil {
		o.err = fmt.Errorf("version 1: %w", err)
		return o
	}
	logf("  serving version 1 (%d probes)", first.probes)
	if err := sleep(b.ctx, b.gap); err != nil {
		o.err = err
		return o
	}

	obs := newObserver(b.clients)
	loadCtx, stopLoad := context.WithCancel(b.ctx)
	defer stopLoad()
	type loadResult struct {
		r   *loadgen.Result
		err error
	}
	loadDone := make(chan loadResult, 1)
	bound := min(time.Duration(b.edits)*(b.editTimeout+b.gap+10*time.Second)+time.Minute, 2*time.Hour)
	go func() {
		r, err := loadgen.Run(loadCtx, loadgen.Config{Addr: addr, Clients: b.clients, Duration: bound, OnResponse: obs.observe, BucketLatencies: true})
		loadDone <- loadResult{r, err}
	}()
	lead := 500 * time.Millisecond // load before the first edit and after the last answer
	if err := sleep(b.ctx, lead); err != nil {
		o.err = err
	}
	for i := 0; i < b.edits && o.err == nil; i++ {
		v := i + 2
		e := b.edit(p, a, addr, v, times, pids)
		o.edits = append(o.edits, e)
		if e.err != nil {
			o.err = fmt.Errorf("edit %d (version %d): %w", i+1, v, e.err)
			break
		}
		logf("  edit %d: version %d answered %s after the write (build %s)", i+1, v, ms(e.latency), msOrUnknown(e.build))
		if i < b.edits-1 {
			if err := sleep(b.ctx, b.gap); err != nil {
				o.err = err
			}
		}
	}
	_ = sleep(b.ctx, lead)
	stopLoad()
	lr := <-loadDone // bounded by the load's duration
	if lr.err != nil {
		o.err = errors.Join(o.err, lr.err)
		return o
	}
	o.load = lr.r
	seen := obs.merge()
	for pid := range seen.pids {
		pids[pid] = true
	}
	o.badBodies = seen.bad
	if err := p.Exited(); err != nil {
		o.err = errors.Join(o.err, err)
	}
	return o
}

// edit writes version v and waits for its first answer and its build time.
func (b *bench) edit(p *proc, a *app, addr string, v int, times buildTimes, pids map[int]bool) (e editResult) {
	e = editResult{version: v, build: -1, readyIn: -1}
	mark, err := times.mark()
	if err != nil {
		e.err = err
		return e
	}
	if err := a.write(v); err != nil {
		e.err = err
		return e
	}
	wrote := time.Now()
	e.wrote = wrote
	w, err := b.waitVersion(p, addr, v, wrote.Add(b.editTimeout), pids)
	e.probes, e.refuse = w.probes, w.refused
	if !w.firstRefused.IsZero() {
		e.closed = w.at.Sub(w.firstRefused)
	}
	if err != nil {
		e.err = err
		return e
	}
	e.latency = w.at.Sub(wrote)
	e.build, e.builds, e.readyIn, e.err = times.since(b.ctx, mark, time.Now().Add(killWait))
	return e
}

// waited is what waitVersion saw.
type waited struct {
	at              time.Time // when the first answer with the version completed
	firstRefused    time.Time // when the first refused probe ended, if any
	probes, refused int
}

// waitVersion probes addr every b.poll, each time on a new connection, until
// an answer says version v, the deadline passes or p exits.
func (b *bench) waitVersion(p *proc, addr string, v int, deadline time.Time, pids map[int]bool) (w waited, err error) {
	last := "none"
	for {
		var got, pid int
		r, err := loadgen.Run(b.ctx, loadgen.Config{
			Addr: addr, MaxRequests: 1, Timeout: time.Second,
			OnResponse: func(_ int, body []byte) { got, pid = parseAnswer(body) },
		})
		if err != nil {
			return w, err
		}
		w.probes++
		now := time.Now()
		if r.Failures == 0 && r.Requests == 1 {
			if pid > 0 {
				pids[pid] = true
			}
			if got == v {
				w.at = now
				return w, nil
			}
			last = fmt.Sprintf("version=%d", got)
		} else if r.Requests == 1 {
			for k := range r.Errors {
				last = k
				if strings.Contains(k, "refused") {
					if w.refused == 0 {
						w.firstRefused = now
					}
					w.refused++
				}
			}
		}
		if err := p.Exited(); err != nil {
			return w, err
		}
		if now.After(deadline) {
			return w, fmt.Errorf("no answer with version=%d from %s in time (last probe: %s); log %s:\n%s", v, addr, last, p.LogPath, p.LogTail(15))
		}
		if err := sleep(b.ctx, b.poll); err != nil {
			return w, err
		}
	}
}

// goBuild runs "go build -o out ." in dir as its own process group and
// returns how long it took.
func (b *bench) goBuild(dir, out string) (time.Duration, error) {
	cmd := exec.CommandContext(b.ctx, "go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killWait
	t0 := time.Now()
	outText, err := cmd.CombinedOutput()
	took := time.Since(t0)
	if err != nil {
		return took, fmt.Errorf("go build in %s: %w: %s", dir, err, outText)
	}
	return took, nil
}

// buildTimes finds the build time of an edit in what a tool wrote.
type buildTimes interface {
	// mark returns a position before the edit.
	mark() (int64, error)
	// since waits, until deadline, for the build that followed mark to be
	// reported, and returns its time, the number of builds since mark and,
	// for hotcluster, its own ready-in time (else -1).
	since(ctx context.Context, mark int64, deadline time.Time) (build time.Duration, builds int, readyIn time.Duration, err error)
}

// hotclusterLog reads hotcluster's log: "building (…)" when a build starts
// and "gen K ready in X (build Y, 1 file changed: main.go)" once the new
// generation is ready.
type hotclusterLog struct{ path string }

var (
	readyLine  = regexp.MustCompile(`gen (\d+) ready in (\S+) \(build (\S+), `)
	buildStart = regexp.MustCompile(`hotcluster: building \(`)
	troubleRe  = regexp.MustCompile(`build failed|failed to start|watcher stopped|crash`)
)

func (h *hotclusterLog) mark() (int64, error) {
	fi, err := os.Stat(h.path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (h *hotclusterLog) since(ctx context.Context, mark int64, deadline time.Time) (time.Duration, int, time.Duration, error) {
	for {
		lines, err := readLinesFrom(h.path, mark)
		if err != nil {
			return -1, 0, -1, err
		}
		builds := 0
		for _, l := range lines {
			if buildStart.MatchString(l) {
				builds++
			}
			if troubleRe.MatchString(l) {
				return -1, builds, -1, fmt.Errorf("hotcluster log: %s", l)
			}
			if m := readyLine.FindStringSubmatch(l); m != nil {
				readyIn, err1 := time.ParseDuration(m[2])
				build, err2 := time.ParseDuration(m[3])
				if err := errors.Join(err1, err2); err != nil {
					return -1, builds, -1, fmt.Errorf("hotcluster log %q: %w", l, err)
				}
				return build, builds, readyIn, nil
			}
		}
		if time.Now().After(deadline) {
			return -1, builds, -1, fmt.Errorf("no %q line in %s after the new version answered", "gen K ready in", h.path)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return -1, builds, -1, err
		}
	}
}

// airTimes reads the lines "<start ns> <end ns> <exit status>" that air's
// build command (a script around "go build -o ./tmp/main .") appends.
type airTimes struct{ path string }

func (t *airTimes) mark() (int64, error) {
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (t *airTimes) since(ctx context.Context, mark int64, deadline time.Time) (time.Duration, int, time.Duration, error) {
	for {
		lines, err := readLinesFrom(t.path, mark)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return -1, 0, -1, err
		}
		var last time.Duration = -1
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) != 3 {
				return -1, len(lines), -1, fmt.Errorf("%s: bad line %q", t.path, l)
			}
			start, err1 := strconv.ParseInt(f[0], 10, 64)
			end, err2 := strconv.ParseInt(f[1], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return -1, len(lines), -1, fmt.Errorf("%s: bad line %q: %w", t.path, l, err)
			}
			if f[2] != "0" {
				return -1, len(lines), -1, fmt.Errorf("air's build failed (exit status %s)", f[2])
			}
			last = time.Duration(end - start)
		}
		if last >= 0 {
			return last, len(lines), -1, nil
		}
		if time.Now().After(deadline) {
			return -1, 0, -1, fmt.Errorf("no build time in %s after the new version answered", t.path)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return -1, 0, -1, err
		}
	}
}

// readLinesFrom returns the complete lines of a file from byte offset off.
func readLinesFrom(path string, off int64) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return nil, err
	}
	var lines []string
	r := bufio.NewReader(f)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			break // an incomplete last line is read next time
		}
		lines = append(lines, strings.TrimRight(l, "\n"))
	}
	return lines, nil
}

// writeAirConfig writes app/.air.toml and the timed build script: air's
// default build command, "go build -o ./tmp/main .", between two clock
// readings appended to a file outside the watched tree.
func writeAirConfig(dir, appDir string, delay int, args []string) (string, buildTimes, error) {
	times := &airTimes{path: filepath.Join(dir, "air-build-times.txt")}
	script := filepath.Join(dir, "air-build.sh")
	body := "#!/bin/sh\n# air's build command, timed.\nt0=$(date +%s%N)\ngo build -o ./tmp/main .\nrc=$?\n" +
		"echo \"$t0 $(date +%s%N) $rc\" >> " + shQuote(times.path) + "\nexit $rc\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		return "", nil, err
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = strconv.Quote(a)
	}
	config := fmt.Sprintf(`root = "."
tmp_dir = "tmp"

[build]
cmd = %s
entrypoint = ["./tmp/main"]
args_bin = [%s]
include_ext = ["go"]
delay = %d

[screen]
clear_on_rebuild = false

[misc]
clean_on_exit = true
`, strconv.Quote(script), strings.Join(quoted, ", "), delay)
	return config, times, os.WriteFile(filepath.Join(appDir, ".air.toml"), []byte(config), 0o644)
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// observer records the app PIDs and malformed bodies seen by the load, with
// one slot per client so that OnResponse needs no lock.
type observer struct{ slots []seen }

type seen struct {
	pids map[int]bool
	bad  int
}

func newObserver(clients int) *observer {
	o := &observer{slots: make([]seen, clients)}
	for i := range o.slots {
		o.slots[i].pids = map[int]bool{}
	}
	return o
}

func (o *observer) observe(client int, body []byte) {
	s := &o.slots[client]
	v, pid := parseAnswer(body)
	if v < 0 || pid <= 0 {
		s.bad++
		return
	}
	s.pids[pid] = true
}

// merge combines the slots; call it only after the run has returned.
func (o *observer) merge() seen {
	all := seen{pids: map[int]bool{}}
	for _, s := range o.slots {
		for pid := range s.pids {
			all.pids[pid] = true
		}
		all.bad += s.bad
	}
	return all
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var logMu sync.Mutex

func logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stderr, "benchdev: "+format+"\n", args...)
}
