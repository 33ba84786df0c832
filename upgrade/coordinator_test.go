package upgrade

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/tableflip"
)

// fakeFlip stands for tableflip: it records what is stored, and its Upgrade
// plays the new master (it reads the state, writes its PID) or fails as
// told.
type fakeFlip struct {
	mu        sync.Mutex
	parent    bool
	parentC   chan struct{} // closed when the parent exits
	files     map[string]*os.File
	upgrades  int
	refuse    []error // returned by the next Upgrades, in order
	newPID    int
	readyCall int
	state     string // what the "new master" read
}

func newFakeFlip() *fakeFlip {
	return &fakeFlip{files: map[string]*os.File{}, parentC: make(chan struct{}), newPID: 4242}
}

func (f *fakeFlip) HasParent() bool { return f.parent }
func (f *fakeFlip) Ready() error    { f.mu.Lock(); f.readyCall++; f.mu.Unlock(); return nil }
func (f *fakeFlip) WaitForParent(ctx context.Context) error {
	select {
	case <-f.parentC:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (f *fakeFlip) File(name string) (*os.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.files[name]; g != nil {
		fd, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(g.Fd())))
		return fd, err
	}
	return nil, nil
}
func (f *fakeFlip) AddFile(name string, g *os.File) error {
	dup, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(g.Fd())))
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.files[name] = dup
	f.mu.Unlock()
	return nil
}
func (f *fakeFlip) Upgrade() error {
	f.mu.Lock()
	f.upgrades++
	if len(f.refuse) > 0 {
		err := f.refuse[0]
		f.refuse = f.refuse[1:]
		f.mu.Unlock()
		return err
	}
	st := f.files[stateFile]
	f.mu.Unlock()
	// The new master: read the state, say its PID where it was told.
	b, err := os.ReadFile("/proc/self/fd/" + strconv.Itoa(int(st.Fd())))
	if err != nil {
		return err
	}
	pidfile, state, _ := strings.Cut(string(b), "\n")
	f.mu.Lock()
	f.state = state
	f.mu.Unlock()
	return os.WriteFile(pidfile, []byte(strconv.Itoa(f.newPID)), 0o600)
}

func runCoordinator(t *testing.T, f *fakeFlip, cfg CoordinatorConfig) (*Coordinator, context.CancelFunc) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
	c, err := newCoordinator(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, cancel
}

func TestCoordinatorUpgrades(t *testing.T) {
	f := newFakeFlip()
	var events []string
	var mu sync.Mutex
	c, _ := runCoordinator(t, f, CoordinatorConfig{
		Prepare: func() (string, error) { return "gen=7", nil },
		OnEvent: func(name string, pid int, err error) { mu.Lock(); events = append(events, name); mu.Unlock() },
	})
	pid, err := c.RequestWait(context.Background())
	if err != nil || pid != 4242 {
		t.Fatalf("RequestWait = %d, %v; want the new master's 4242", pid, err)
	}
	if got := <-c.HandedOver(); got != 4242 {
		t.Errorf("HandedOver gave %d", got)
	}
	if f.state != "gen=7" {
		t.Errorf("the new master read state %q, want gen=7", f.state)
	}
	if _, err := c.RequestWait(context.Background()); !errors.Is(err, ErrHandedOver) {
		t.Errorf("a second upgrade: %v, want ErrHandedOver", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(events, ",") != "upgrade-start,upgrade-done" {
		t.Errorf("events %v", events)
	}
}

// While the master that started this one drains, an upgrade is refused by
// the coordinator itself; once it has exited, tableflip's own late refusal
// (it learns of the exit in its own goroutine) is retried away.
func TestCoordinatorWaitsForTheParent(t *testing.T) {
	f := newFakeFlip()
	f.parent = true
	exited := make(chan struct{})
	c, _ := runCoordinator(t, f, CoordinatorConfig{ParentExited: func() { close(exited) }})
	if _, err := c.RequestWait(context.Background()); !errors.Is(err, ErrParentDraining) {
		t.Fatalf("upgrade while the parent drains: %v, want ErrParentDraining", err)
	}
	if f.upgrades != 0 {
		t.Error("tableflip was asked although the parent still drains")
	}
	close(f.parentC)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("ParentExited not called")
	}
	f.mu.Lock()
	f.refuse = []error{errors.New("tableflip: " + tableflipParentDraining), errors.New(tableflipParentDraining)}
	f.mu.Unlock()
	if pid, err := c.RequestWait(context.Background()); err != nil || pid != 4242 {
		t.Fatalf("upgrade after the parent exited: %d, %v", pid, err)
	}
	if f.upgrades != 3 {
		t.Errorf("%d calls to Upgrade, want 2 refused and 1 that worked", f.upgrades)
	}
}

func TestCoordinatorFailure(t *testing.T) {
	f := newFakeFlip()
	f.refuse = []error{errors.New(tableflipNotReady), errors.New("can't start child: exec format error")}
	failed := 0
	c, _ := runCoordinator(t, f, CoordinatorConfig{Failed: func() { failed++ }})
	if _, err := c.RequestWait(context.Background()); !errors.Is(err, ErrNotServing) {
		t.Errorf("before serving: %v, want ErrNotServing", err)
	}
	if _, err := c.RequestWait(context.Background()); err == nil || !strings.Contains(err.Error(), "exec format error") {
		t.Errorf("a new master that fails: %v", err)
	}
	if failed != 2 {
		t.Errorf("Failed called %d times, want 2", failed)
	}
	select {
	case <-c.HandedOver():
		t.Error("handed over after failures")
	default:
	}
}

// The new side: state and PID file from the previous master.
func TestCoordinatorInherits(t *testing.T) {
	f := newFakeFlip()
	f.parent = true
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "pid")
	st, err := os.CreateTemp(t.TempDir(), "state")
	if err != nil {
		t.Fatal(err)
	}
	st.WriteString(pidfile + "\ngen=3;active=1")
	f.AddFile(stateFile, st)
	st.Close()
	c, err := newCoordinator(f, CoordinatorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Inherited() != "gen=3;active=1" {
		t.Errorf("Inherited() = %q", c.Inherited())
	}
	if err := c.Announce(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(pidfile)
	if string(b) != strconv.Itoa(os.Getpid()) || f.readyCall != 1 {
		t.Errorf("pid file %q, Ready called %d times", b, f.readyCall)
	}
}

// TestErrorTexts pins the tableflip refusals mapError reads to the
// version in go.mod: a new tableflip that words them differently fails
// here rather than in production.
func TestErrorTexts(t *testing.T) {
	tf, err := tableflip.New(tableflip.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Stop()
	if err := tf.Upgrade(); err == nil || !strings.Contains(err.Error(), tableflipNotReady) || !errors.Is(mapError(err), ErrNotServing) {
		t.Errorf("tableflip's Upgrade before Ready: %v; mapError makes it %v", err, mapError(err))
	}
	// "parent hasn't exited" needs a real parent; its text is checked
	// against the module's source.
	src, err := os.ReadFile(filepath.Join(moduleDir(t, "github.com/cloudflare/tableflip"), "upgrader.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `errors.New("`+tableflipParentDraining+`")`) {
		t.Errorf("tableflip's upgrader.go no longer says %q", tableflipParentDraining)
	}
}

// moduleDir is where the go command keeps module mod's source.
func moduleDir(t *testing.T, mod string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil {
		t.Skipf("go list -m %s: %v (needs the go command and the module cache)", mod, err)
	}
	return strings.TrimSpace(string(out))
}
