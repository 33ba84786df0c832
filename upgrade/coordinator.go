package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/hotcluster/hotcluster/internal/safedir"
	"golang.org/x/sys/unix"
)

// Errors of [Coordinator.RequestWait], beside the new master's own failure.
var (
	// ErrParentDraining: this master was itself started by an upgrade and
	// its predecessor has not exited yet (tableflip allows one upgrade at
	// a time).
	ErrParentDraining = errors.New("upgrade: the previous master is still draining; upgrade again once it has exited")
	// ErrNotServing: this master has not served yet.
	ErrNotServing = errors.New("upgrade: this master is not serving yet; upgrade once it is")
	// ErrHandedOver: this master already handed over to a new one.
	ErrHandedOver = errors.New("upgrade: this master has already handed over")
	// ErrStopping: this master is stopping.
	ErrStopping = errors.New("upgrade: this master is stopping")
)

// stateFile names, among the files an upgrade passes on, the memfd that
// carries the coordinator's state to the new master: the caller's state
// (the generation numbers, which sockets the workers hold) and where the new
// master writes its PID. A file rather than an environment variable, so
// that nothing has to be set in this process's environment around the
// re-execution, and workers never see it.
const stateFile = "hotcluster-upgrade-state"

// CoordinatorConfig configures a Coordinator.
type CoordinatorConfig struct {
	// Prepare is called just before an upgrade: it stores what must cross
	// it (the sockets) and returns the state the new master gets from
	// Inherited.
	Prepare func() (string, error)
	// Failed is called when an upgrade failed after Prepare (the new
	// master may have moved the traffic before it died).
	Failed func()
	// OnEvent reports upgrade-start, upgrade-done (with the new master's
	// PID) and upgrade-failed (with why). It must not block.
	OnEvent func(name string, pid int, err error)
	// ParentExited is called once the master that started this one has
	// exited: its sockets are free, and this master may upgrade in turn.
	ParentExited func()
	Log          *slog.Logger
}

// flipper is what the coordinator needs of the Upgrader; its tests use a
// fake.
type flipper interface {
	Upgrade() error
	Ready() error
	HasParent() bool
	WaitForParent(ctx context.Context) error
	File(name string) (*os.File, error)
	AddFile(name string, f *os.File) error
}

// Coordinator runs the binary upgrades of one master (SIGUSR2, or
// `hotcluster upgrade`): on the old side it hands the sockets and state to
// a new master and reports when that one serves; on the new side it takes
// them over and tells the old one once it serves.
//
// One goroutine, Run's, owns its state: idle, then (on a request)
// upgrading, and after a successful upgrade handed over, for good; and
// whether a predecessor still drains. Requests that arrive during an
// upgrade are answered with its outcome.
type Coordinator struct {
	u   flipper
	cfg CoordinatorConfig

	reqs       chan request
	handedOver chan int
	inherited  string
	pidfile    string // of the new side: where to write our PID
}

type request struct {
	result chan<- result // nil for a signal's request
}

type result struct {
	pid int
	err error
}

// NewCoordinator returns the coordinator of the master that owns u. On a
// master started by an upgrade it reads the state the previous master
// passed (see Inherited).
//
// tableflip re-executes os.Args[0] with os.Args[1:]: NewCoordinator makes
// os.Args[0] the binary's real path, as resolved now, whatever the shell or
// systemd called it.
func NewCoordinator(u *Upgrader, cfg CoordinatorConfig) (*Coordinator, error) {
	if exe, err := os.Executable(); err == nil {
		os.Args[0] = exe
	}
	return newCoordinator(u, cfg)
}

func newCoordinator(u flipper, cfg CoordinatorConfig) (*Coordinator, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(string, int, error) {}
	}
	c := &Coordinator{u: u, cfg: cfg, reqs: make(chan request, 16), handedOver: make(chan int, 1)}
	if u.HasParent() {
		f, err := u.File(stateFile)
		if err != nil {
			return nil, err
		}
		if f != nil {
			b, err := io.ReadAll(io.LimitReader(f, 1<<20))
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("upgrade: read the previous master's state: %w", err)
			}
			c.pidfile, c.inherited, _ = strings.Cut(string(b), "\n")
		}
	}
	return c, nil
}

// Inherited returns the state the previous master's Prepare returned, or
// "" when this master was not started by an upgrade.
func (c *Coordinator) Inherited() string { return c.inherited }

// HasParent reports whether this master was started by an upgrade.
func (c *Coordinator) HasParent() bool { return c.u.HasParent() }

// HandedOver delivers the new master's PID once an upgrade succeeded: this
// master's workers are to drain, and the new one answers from now on.
func (c *Coordinator) HandedOver() <-chan int { return c.handedOver }

// Request asks for an upgrade without waiting; one already asked for
// absorbs it.
func (c *Coordinator) Request() {
	select {
	case c.reqs <- request{}:
	default:
	}
}

// RequestWait asks for an upgrade and returns the new master's PID once it
// serves, or why the upgrade did not happen (one of the errors above, or
// the new master's failure).
func (c *Coordinator) RequestWait(ctx context.Context) (int, error) {
	r := make(chan result, 1)
	select {
	case c.reqs <- request{result: r}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case res := <-r:
		return res.pid, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Announce tells the previous master, if any, that this one serves: it
// writes our PID where the previous master reads it (for systemd's
// MAINPID=) and calls Ready.
func (c *Coordinator) Announce() error {
	if c.pidfile != "" {
		// In the previous master's private directory; made exclusively,
		// never through a name someone left there.
		f, _, err := safedir.OpenFile(c.pidfile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.WriteString(strconv.Itoa(os.Getpid()))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("upgrade: tell the previous master our PID: %w", err)
		}
	}
	return c.u.Ready()
}

// Run performs the requested upgrades until ctx ends or one succeeds, and
// waits for the previous master, if any, to exit. Every request it took is
// answered before it returns.
func (c *Coordinator) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parentGone := make(chan struct{})
	draining := c.u.HasParent()
	if draining {
		waited := make(chan struct{})
		defer func() { <-waited }() // after cancel, which ends the wait
		go func() {
			defer close(waited)
			if c.u.WaitForParent(ctx) == nil {
				close(parentGone)
			}
		}()
	}
	var waiting []request
	answer := func(r result) {
		// Requests that queued meanwhile are answered by this outcome.
		for more := true; more; {
			select {
			case q := <-c.reqs:
				waiting = append(waiting, q)
			default:
				more = false
			}
		}
		for _, w := range waiting {
			if w.result != nil {
				w.result <- r
			}
		}
		waiting = waiting[:0]
	}
	defer func() { answer(result{err: ErrStopping}) }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-parentGone:
			parentGone, draining = nil, false
			c.cfg.Log.Info("the previous master has exited")
			if c.cfg.ParentExited != nil {
				c.cfg.ParentExited()
			}
			continue
		case q := <-c.reqs:
			waiting = append(waiting, q)
		}
		if draining {
			c.logFailure(ErrParentDraining)
			answer(result{err: ErrParentDraining})
			continue
		}
		c.cfg.OnEvent("upgrade-start", os.Getpid(), nil)
		pid, err := c.once()
		if err != nil {
			if c.cfg.Failed != nil {
				c.cfg.Failed()
			}
			c.logFailure(err)
			c.cfg.OnEvent("upgrade-failed", os.Getpid(), err)
			answer(result{err: err})
			continue
		}
		c.cfg.Log.Info(fmt.Sprintf("upgraded: master pid %d took over; draining this master's workers", pid))
		c.cfg.OnEvent("upgrade-done", pid, nil)
		answer(result{pid: pid})
		c.handedOver <- pid
		// From now on every request is answered ErrHandedOver, until ctx
		// ends.
		for {
			select {
			case <-ctx.Done():
				return
			case q := <-c.reqs:
				waiting = append(waiting, q)
				answer(result{err: ErrHandedOver})
			}
		}
	}
}

// logFailure says why an upgrade did not happen.
func (c *Coordinator) logFailure(err error) {
	c.cfg.Log.Error(fmt.Sprintf("upgrade failed: %s; this master (pid %d) keeps serving", Reason(err), os.Getpid()))
}

// Reason is err's text without this package's prefix, for a message that
// already says "upgrade failed".
func Reason(err error) string { return strings.TrimPrefix(err.Error(), "upgrade: ") }

// once performs one upgrade and returns the new master's PID.
func (c *Coordinator) once() (int, error) {
	c.cfg.Log.Info("SIGUSR2: upgrading to " + os.Args[0])
	if _, err := os.Stat(os.Args[0]); err != nil {
		return 0, fmt.Errorf("new binary: %w", err)
	}
	// Private (0700, made exclusively), where the new master says its PID.
	dir, err := safedir.MkdirTemp("", "hotcluster-upgrade-", 0o700)
	if err != nil {
		return 0, fmt.Errorf("upgrade: %w", err)
	}
	defer func() {
		os.RemoveAll(dir.Path())
		dir.Close()
	}()
	state := ""
	if c.cfg.Prepare != nil {
		if state, err = c.cfg.Prepare(); err != nil {
			return 0, err
		}
	}
	if err := c.storeState(dir.Join("pid") + "\n" + state); err != nil {
		return 0, err
	}
	if err := c.upgrade(); err != nil {
		return 0, err
	}
	f, _, err := dir.OpenFile("pid", os.O_RDONLY, 0)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(f, 32))
		f.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("the new master did not say its PID: %w", err)
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil {
		return 0, fmt.Errorf("the new master's PID %q: %w", data, err)
	}
	return pid, nil
}

// storeState puts s into a memfd among the files the upgrade passes on.
func (c *Coordinator) storeState(s string) error {
	fd, err := unix.MemfdCreate(stateFile, unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("upgrade: state: %w", err)
	}
	f := os.NewFile(uintptr(fd), stateFile)
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		return fmt.Errorf("upgrade: state: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("upgrade: state: %w", err)
	}
	return c.u.AddFile(stateFile, f)
}

// upgrade calls tableflip's Upgrade and maps its refusals to this
// package's errors. tableflip learns of its parent's exit in its own
// goroutine, so just after WaitForParent returned it may still refuse with
// "parent hasn't exited": its loop then has both the exit and the request
// ready and picks one at random, so a few immediate retries get through.
func (c *Coordinator) upgrade() error {
	var err error
	for try := 0; try < 32; try++ {
		err = mapError(c.u.Upgrade())
		if !errors.Is(err, ErrParentDraining) {
			break
		}
	}
	return err
}

// tableflip's refusals, by their text in tableflip v1.2.3 (upgrader.go:
// errNotReady, and the unexported "parent hasn't exited"); TestErrorTexts
// pins them to the version in go.mod.
const (
	tableflipNotReady       = "process is not ready yet"
	tableflipParentDraining = "parent hasn't exited"
)

// mapError turns tableflip's refusals into this package's sentinels, the
// only place that reads tableflip's error texts.
func mapError(err error) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), tableflipNotReady):
		return ErrNotServing
	case strings.Contains(err.Error(), tableflipParentDraining):
		return ErrParentDraining
	}
	return err
}
