package devloop

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/workers"
)

// fakePool records the commands the loop hands over and starts builds as
// the real pool does (from any goroutine here: the fake has no forker).
type fakePool struct {
	reloads chan workers.Command
}

func (f *fakePool) Reload(u workers.Update) {
	if u.Command != nil {
		f.reloads <- *u.Command
	}
}

func (f *fakePool) StartProcess(cmd *exec.Cmd) error { return cmd.Start() }

type builds struct {
	mu   sync.Mutex
	errs []error
	done chan struct{} // a value per build that ended
}

func runLoop(t *testing.T, build string) (*Loop, *fakePool, *builds) {
	t.Helper()
	pool := &fakePool{reloads: make(chan workers.Command, 16)}
	b := &builds{done: make(chan struct{}, 16)}
	l, err := New(Config{
		Build: build, Command: []string{"/bin/cat", Placeholder}, OutDir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnBuild: func(_ time.Duration, err error) {
			b.mu.Lock()
			b.errs = append(b.errs, err)
			b.mu.Unlock()
			b.done <- struct{}{}
		},
	}, pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-stopped
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(l.OutDir()); !os.IsNotExist(err) {
			t.Errorf("Close left the output directory: %v", err)
		}
	})
	return l, pool, b
}

func next[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("nothing within 30s")
	}
	var zero T
	return zero
}

// The invariant: a generation starts only from a build that succeeded,
// and each output lives exactly as long as something may run it.
func TestBuildOutputsLiveWhileTheirGenerationRuns(t *testing.T) {
	t.Parallel()
	l, pool, b := runLoop(t, `echo v1 > {out}`)
	// The first build, at start.
	next(t, b.done)
	cmd1 := next(t, pool.reloads)
	out1 := cmd1.Args[1]
	if !strings.HasPrefix(out1, l.OutDir()) {
		t.Fatalf("gen 1 runs %v, not an output in %s", cmd1.Args, l.OutDir())
	}
	l.Event(workers.Event{Kind: workers.GenStarting, Gen: 1, Command: cmd1})
	l.Event(workers.Event{Kind: workers.GenReady, Gen: 1, Command: cmd1})

	// A second build: while gen 2 starts, gen 1's output stays.
	l.Trigger()
	next(t, b.done)
	cmd2 := next(t, pool.reloads)
	out2 := cmd2.Args[1]
	if out2 == out1 {
		t.Fatal("the second build wrote over the first's output")
	}
	l.Event(workers.Event{Kind: workers.GenStarting, Gen: 2, Command: cmd2})
	l.Event(workers.Event{Kind: workers.GenReady, Gen: 2, Command: cmd2})
	mustExist(t, out1, out2)
	// Gen 1 has drained: its output goes; gen 2's stays.
	l.Event(workers.Event{Kind: workers.GenDone, Gen: 1, Command: cmd1})
	eventually(t, "gen 1's output removed", func() bool { _, err := os.Stat(out1); return os.IsNotExist(err) })
	mustExist(t, out2)
}

// A failed build hands nothing to the pool and is reported; the output it
// may have written is removed.
func TestFailedBuildChangesNothing(t *testing.T) {
	t.Parallel()
	l, pool, b := runLoop(t, `echo half > {out}; exit 3`)
	next(t, b.done)
	b.mu.Lock()
	err := b.errs[0]
	b.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("build error %v, want exit status 3", err)
	}
	select {
	case c := <-pool.reloads:
		t.Fatalf("a failed build was handed to the pool: %v", c.Args)
	default:
	}
	ents, _ := os.ReadDir(l.OutDir())
	if len(ents) != 0 {
		t.Errorf("a failed build left %d files in the output directory", len(ents))
	}
}

func mustExist(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("output %s: %v", p, err)
		}
	}
}

// eventually polls a file system condition that the loop's goroutine
// brings about, with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
