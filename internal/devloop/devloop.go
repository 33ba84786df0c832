// Package devloop is hotcluster's development mode: on each burst of file
// changes it runs the build, and hands a successful build's output to the
// worker group as the next generation's command, while the previous
// generation keeps serving.
//
// Invariant: a generation is only ever started from a build that
// succeeded, and every build output lives until no worker can run it any
// more: its generation has ended, or it was superseded before any
// generation ran it. A failed build changes nothing but the log.
//
// "{out}" in the build command and in the worker command stands for a
// fresh output path per build, in a private directory, so a running
// generation's binary is never overwritten under it. A change during a
// build cancels that build (its process group is killed) and starts a new
// one with every change seen so far.
package devloop

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/safedir"
	"github.com/hotcluster/hotcluster/workers"
)

// Placeholder is replaced by the build's output path.
const Placeholder = "{out}"

// Pool is the worker group: package workers' Pool implements it.
type Pool interface {
	Reload(workers.Update)
	// StartProcess starts cmd from the thread the pool forks its workers
	// from: a build's Pdeathsig then fires when the master ends, not when
	// the runtime retires the thread a goroutine happened to run on
	// (go.dev/issue/27505).
	StartProcess(cmd *exec.Cmd) error
}

// Config describes the loop.
type Config struct {
	// Build is a shell command (run by /bin/sh -c in Dir); empty means a
	// change just reloads.
	Build string
	// Command is the worker argv; it may hold Placeholder.
	Command []string
	Dir     string
	// OutDir is where build outputs go; it is created by New (under the
	// system's temporary directory when empty) and removed by Close. The
	// build, run as the master's user (root, say), writes {out} in it by
	// path, so only that user may add or replace a name there.
	OutDir string
	// OutDirMode is the output directory's mode; default 0700. For workers
	// of another user, 0711 lets them run the outputs without listing or
	// changing the directory.
	OutDirMode fs.FileMode
	Log        *slog.Logger
	Color      bool
	// OnBuild, when set, is told of each build that ran to its end: err
	// is nil when it succeeded. It is called from Run's goroutine and must
	// not block.
	OnBuild func(took time.Duration, err error)
}

// Check reports what makes cfg unusable: a worker command that runs {out}
// without a build that writes it. Its errors are the command line's
// mistakes.
func (cfg Config) Check() error {
	uses := false
	for _, a := range cfg.Command {
		uses = uses || strings.Contains(a, Placeholder)
	}
	if uses && cfg.Build == "" {
		return fmt.Errorf("the worker command uses %s but there is no --build to produce it", Placeholder)
	}
	if cfg.Build != "" && !strings.Contains(cfg.Build, Placeholder) && uses {
		return fmt.Errorf("--build %q does not write %s, which the worker command runs", cfg.Build, Placeholder)
	}
	return nil
}

// Loop runs builds and feeds the pool. Create it with New, run it with Run,
// remove its outputs with Close once the pool has stopped. Changed, Trigger
// and Event are safe to call from any goroutine and never block.
type Loop struct {
	cfg  Config
	pool Pool

	mu     sync.Mutex
	inbox  []any
	wakeup chan struct{}

	// Owned by Run.
	seq      int
	building *build
	pending  []string // changes that arrived while a build ran
	forced   bool
	handed   []*build          // built, handed to the pool, not yet seen running
	running  map[string]*build // command key -> build, for generations seen
	started  map[uint64]*build // generation -> its build
}

// build is one run of the build command.
type build struct {
	n       int
	out     string
	key     string // of the command handed to the pool
	files   []string
	trigger time.Time // when the change that caused it was seen
	start   time.Time
	took    time.Duration
	cmd     *exec.Cmd
	output  bytes.Buffer
	err     error
	done    chan struct{}
	cancel  bool
}

type (
	changed struct {
		files  []string
		forced bool
		at     time.Time
	}
	poolEvent struct{ e workers.Event }
)

// New checks cfg and makes the output directory.
func New(cfg Config, pool Pool) (*Loop, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.OutDirMode == 0 {
		cfg.OutDirMode = 0o700
	}
	dir, err := safedir.MkdirTemp(cfg.OutDir, "hotcluster-build-", cfg.OutDirMode)
	if err != nil {
		return nil, fmt.Errorf("build output directory: %w", err)
	}
	cfg.OutDir = dir.Path()
	dir.Close()
	return &Loop{
		cfg: cfg, pool: pool, wakeup: make(chan struct{}, 1),
		running: make(map[string]*build), started: make(map[uint64]*build),
	}, nil
}

// OutDir is the directory of build outputs, for the watcher to ignore.
func (l *Loop) OutDir() string { return l.cfg.OutDir }

func (l *Loop) post(m any) {
	l.mu.Lock()
	l.inbox = append(l.inbox, m)
	l.mu.Unlock()
	select {
	case l.wakeup <- struct{}{}:
	default:
	}
}

// Changed reports a burst of changed files.
func (l *Loop) Changed(files []string) { l.post(changed{files: files, at: time.Now()}) }

// Trigger forces a rebuild and reload, as SIGHUP and "r" + Enter do.
func (l *Loop) Trigger() { l.post(changed{forced: true, at: time.Now()}) }

// Event passes on an event of the pool (its Config.OnEvent).
func (l *Loop) Event(e workers.Event) { l.post(poolEvent{e}) }

// Run builds once at start, then on every change, until ctx ends; then it
// kills a running build and returns.
func (l *Loop) Run(ctx context.Context) error {
	l.handle(changed{forced: true, at: time.Now()})
	for {
		var buildDone chan struct{}
		if l.building != nil {
			buildDone = l.building.done
		}
		select {
		case <-ctx.Done():
			if b := l.building; b != nil {
				b.kill()
				<-b.done
				os.Remove(b.out)
			}
			return nil
		case <-l.wakeup:
			l.mu.Lock()
			msgs := l.inbox
			l.inbox = nil
			l.mu.Unlock()
			for _, m := range msgs {
				l.handle(m)
			}
		case <-buildDone:
			l.finished(l.building)
		}
	}
}

func (l *Loop) handle(m any) {
	switch m := m.(type) {
	case changed:
		if l.cfg.Build == "" {
			if len(m.files) > 0 || m.forced {
				l.cfg.Log.Info(fmt.Sprintf("%s: reloading", describeFiles(m.files)))
				l.reload(&build{files: m.files, trigger: m.at})
			}
			return
		}
		l.pending = mergeFiles(l.pending, m.files)
		l.forced = l.forced || m.forced
		if b := l.building; b != nil {
			// Superseded: its result would be stale.
			b.cancel = true
			b.kill()
			return
		}
		l.startBuild(m.at)
	case poolEvent:
		l.poolEvent(m.e)
	}
}

func (l *Loop) startBuild(at time.Time) {
	l.seq++
	b := &build{n: l.seq, files: l.pending, trigger: at, done: make(chan struct{})}
	l.pending, l.forced = nil, false
	b.out = filepath.Join(l.cfg.OutDir, fmt.Sprintf("out-%d", b.n))
	script := strings.ReplaceAll(l.cfg.Build, Placeholder, shellQuote(b.out))
	b.cmd = exec.Command("/bin/sh", "-c", script)
	b.cmd.Dir = l.cfg.Dir
	b.cmd.Stdout = &b.output
	b.cmd.Stderr = &b.output
	b.cmd.SysProcAttr = buildProcAttr()
	l.cfg.Log.Info(fmt.Sprintf("building (%s)", describeFiles(b.files)))
	b.start = time.Now()
	if err := l.pool.StartProcess(b.cmd); err != nil {
		b.err = err
		close(b.done)
		l.building = b
		return
	}
	l.building = b
	go func() {
		b.err = b.cmd.Wait()
		b.took = time.Since(b.start)
		close(b.done)
	}()
}

func (b *build) kill() {
	if b.cmd.Process != nil {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// finished handles the end of the running build.
func (l *Loop) finished(b *build) {
	l.building = nil
	switch {
	case b.cancel:
		os.Remove(b.out)
	case b.err != nil:
		os.Remove(b.out)
		l.cfg.Log.Error(l.paint("31", fmt.Sprintf("build failed after %s: %v (%s); the running generation keeps serving%s",
			b.took.Round(time.Millisecond), b.err, describeFiles(b.files), indent(b.output.String()))))
		l.built(b.took, b.err)
	default:
		if out := strings.TrimSpace(b.output.String()); out != "" {
			l.cfg.Log.Error(fmt.Sprintf("build output:%s", indent(out)))
		}
		if _, err := os.Stat(b.out); err != nil && l.usesOut() {
			l.cfg.Log.Error(l.paint("31", fmt.Sprintf("build succeeded but wrote no %s (%v); check that --build writes to {out}", b.out, err)))
			l.built(b.took, fmt.Errorf("wrote no %s", b.out))
			break
		}
		l.built(b.took, nil)
		l.reload(b)
	}
	if len(l.pending) > 0 || l.forced {
		l.startBuild(time.Now())
	}
}

func (l *Loop) built(took time.Duration, err error) {
	if l.cfg.OnBuild != nil {
		l.cfg.OnBuild(took, err)
	}
}

func (l *Loop) usesOut() bool {
	for _, a := range l.cfg.Command {
		if strings.Contains(a, Placeholder) {
			return true
		}
	}
	return false
}

// reload hands the build's command to the pool.
func (l *Loop) reload(b *build) {
	argv := make([]string, len(l.cfg.Command))
	for i, a := range l.cfg.Command {
		argv[i] = strings.ReplaceAll(a, Placeholder, b.out)
	}
	path, err := workers.ResolveCommand(argv[0], l.cfg.Dir)
	if err != nil {
		l.cfg.Log.Error(l.paint("31", err.Error()))
		return
	}
	cmd := workers.Command{Path: path, Args: argv}
	b.key = cmdKey(cmd)
	l.handed = append(l.handed, b)
	l.pool.Reload(workers.Update{Command: &cmd})
}

func (l *Loop) poolEvent(e workers.Event) {
	// Builds handed over before this generation's and never started were
	// superseded while a turnover ran: nothing will run them.
	var b *build
	key := cmdKey(e.Command)
	for i, h := range l.handed {
		if h.key == key {
			b = h
			for _, old := range l.handed[:i] {
				l.removeOut(old)
			}
			l.handed = l.handed[i+1:]
			l.running[key] = b
			break
		}
	}
	if b == nil {
		b = l.running[key]
	}
	if b == nil {
		return
	}
	switch e.Kind {
	case workers.GenReady:
		l.started[e.Gen] = b
		what := describeFiles(b.files)
		if b.cmd != nil {
			what = fmt.Sprintf("build %s, %s", b.took.Round(time.Millisecond), what)
		}
		l.cfg.Log.Info(l.paint("32", fmt.Sprintf("gen %d ready in %s (%s)", e.Gen, time.Since(b.trigger).Round(time.Millisecond), what)))
	case workers.GenFailed:
		l.started[e.Gen] = b
		l.cfg.Log.Error(l.paint("31", fmt.Sprintf("gen %d failed to start; fix the code and save again", e.Gen)))
	case workers.GenDone:
		delete(l.started, e.Gen)
		for _, other := range l.started {
			if other == b {
				return // a respawn or another generation still runs it
			}
		}
		delete(l.running, b.key)
		l.removeOut(b)
	}
}

// removeOut deletes a build's output, if the loop made it.
func (l *Loop) removeOut(b *build) {
	if b.cmd != nil && b.out != "" {
		os.Remove(b.out)
	}
}

// Close removes every build output. Call it once the pool has stopped.
func (l *Loop) Close() error {
	if err := os.RemoveAll(l.cfg.OutDir); err != nil {
		return fmt.Errorf("remove build outputs: %w", err)
	}
	return nil
}

func (l *Loop) paint(color, s string) string {
	if !l.cfg.Color {
		return s
	}
	return "\x1b[" + color + "m" + s + "\x1b[0m"
}

func describeFiles(files []string) string {
	switch len(files) {
	case 0:
		return "manual reload"
	case 1:
		return "1 file changed: " + filepath.Base(files[0])
	}
	return fmt.Sprintf("%d files changed", len(files))
}

func mergeFiles(a, b []string) []string {
	seen := make(map[string]bool, len(a))
	for _, f := range a {
		seen[f] = true
	}
	for _, f := range b {
		if !seen[f] {
			seen[f] = true
			a = append(a, f)
		}
	}
	return a
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "\n    | " + strings.ReplaceAll(s, "\n", "\n    | ")
}

// cmdKey identifies a generation's command: two builds differ in argv even
// when the executable is the same interpreter.
func cmdKey(c workers.Command) string {
	return c.Path + "\x00" + strings.Join(c.Args, "\x00")
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
