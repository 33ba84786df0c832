package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hotcluster/hotcluster/handoff"
	"github.com/hotcluster/hotcluster/internal/safedir"
	"github.com/hotcluster/hotcluster/upgrade"
	"github.com/hotcluster/hotcluster/workers"
)

// envUpgrade carries, from a master to the one its upgrade starts, what the
// sockets alone do not say: the generation numbers so far, which sockets
// its workers hold, and where the new master writes its PID (for MAINPID=).
const envUpgrade = "HOTCLUSTER_UPGRADE"

// upgradeState is the content of envUpgrade.
type upgradeState struct {
	gen     uint64
	prev    handoff.Previous
	pidfile string
}

func (u upgradeState) String() string {
	held := make([]string, len(u.prev.Held))
	for i, k := range u.prev.Held {
		held[i] = strconv.Itoa(k)
	}
	return fmt.Sprintf("gen=%d;active=%d;held=%s;pidfile=%s", u.gen, u.prev.Active, strings.Join(held, ","), u.pidfile)
}

func parseUpgradeState(s string) (upgradeState, error) {
	var u upgradeState
	for _, kv := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "gen":
			u.gen, err = strconv.ParseUint(v, 10, 64)
		case "active":
			u.prev.Active, err = strconv.Atoi(v)
		case "held":
			for _, h := range strings.Split(v, ",") {
				if h == "" {
					continue
				}
				n, herr := strconv.Atoi(h)
				if herr != nil {
					err = herr
				}
				u.prev.Held = append(u.prev.Held, n)
			}
		case "pidfile":
			u.pidfile = v
		}
		if err != nil {
			return u, fmt.Errorf("%s %q: %s: %w", envUpgrade, s, k, err)
		}
	}
	return u, nil
}

// binaryUpgrade runs hotcluster's own binary upgrade (SIGUSR2) for one
// master: the old side (Upgrade) and the new side (takeOver, announce).
type binaryUpgrade struct {
	upg  *upgrade.Upgrader
	log  *log.Logger
	gen  atomic.Uint64 // newest generation started, from the pool's events
	done atomic.Bool   // a new master took over
	// parentGone is set once the master that started this one has exited.
	parentGone atomic.Bool
	// reqs carries upgrade requests.
	reqs chan upgradeRequest
	// onEvent publishes upgrade-start, upgrade-done and upgrade-failed.
	onEvent func(name string, pid int, err string)
	// pidfile is where this master, started by an upgrade, writes its PID
	// for the previous one.
	pidfile string
}

func newBinaryUpgrade(upg *upgrade.Upgrader) *binaryUpgrade {
	return &binaryUpgrade{upg: upg, reqs: make(chan upgradeRequest, 16), onEvent: func(string, int, string) {}}
}

// takeOver reads what the previous master passed, if this master was
// started by an upgrade.
func (b *binaryUpgrade) takeOver(rc *runConfig) error {
	s := os.Getenv(envUpgrade)
	os.Unsetenv(envUpgrade)
	if !b.upg.HasParent() || s == "" {
		return nil
	}
	// WATCHDOG_PID names the previous master; this one becomes the main
	// process and must keep the watchdog fed once it is.
	os.Unsetenv("WATCHDOG_PID")
	u, err := parseUpgradeState(s)
	if err != nil {
		return err
	}
	rc.sockets.Previous = &u.prev
	rc.pool.FirstGeneration = u.gen + 1
	b.pidfile = u.pidfile
	return nil
}

// event follows the generation numbers.
func (b *binaryUpgrade) event(e workers.Event) {
	if e.Kind == workers.GenStarting {
		b.gen.Store(e.Gen)
	}
}

type upgradeResult struct {
	pid int
	err error
}

// upgradeRequest asks for an upgrade; result, when set, gets its outcome
// (a signal's request has none).
type upgradeRequest struct {
	result chan<- upgradeResult
}

// request asks for an upgrade; one already asked for absorbs it.
func (b *binaryUpgrade) request() {
	select {
	case b.reqs <- upgradeRequest{}:
	default:
	}
}

// requestWait asks for an upgrade and returns the new master's PID once it
// serves, or why the upgrade failed.
func (b *binaryUpgrade) requestWait(ctx context.Context) (int, error) {
	c := make(chan upgradeResult, 1)
	select {
	case b.reqs <- upgradeRequest{result: c}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-c:
		return r.pid, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// announce tells the previous master that this one serves.
func (b *binaryUpgrade) announce() error {
	if b.pidfile != "" {
		// In the previous master's private directory; made exclusively,
		// never through a name someone left there.
		f, _, err := safedir.OpenFile(b.pidfile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
	return b.upg.Ready()
}

// run performs requested upgrades until ctx ends. On success it calls
// handedOver with the new master's PID, once.
func (b *binaryUpgrade) run(ctx context.Context, socks *handoff.Sockets, handedOver func(pid int)) {
	var waiting []upgradeRequest
	answer := func(r upgradeResult) {
		// Requests that queued meanwhile are answered by this upgrade.
		for {
			select {
			case r := <-b.reqs:
				waiting = append(waiting, r)
				continue
			default:
			}
			break
		}
		for _, w := range waiting {
			if w.result != nil {
				w.result <- r
			}
		}
		waiting = waiting[:0]
	}
	defer func() {
		answer(upgradeResult{err: errors.New("this master is stopping")})
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-b.reqs:
			waiting = append(waiting, r)
		}
		if b.done.Load() {
			answer(upgradeResult{err: errors.New("this master has already handed over")})
			continue
		}
		b.onEvent("upgrade-start", os.Getpid(), "")
		pid, err := b.once(socks)
		if err != nil {
			if socks != nil {
				// The new master may have steered to its own generation
				// before it failed.
				if rerr := socks.Reclaim(); rerr != nil {
					b.log.Printf("upgrade failed: %v", rerr)
				}
			}
			b.log.Printf("upgrade failed: %v; this master (pid %d) keeps serving", err, os.Getpid())
			b.onEvent("upgrade-failed", os.Getpid(), err.Error())
			answer(upgradeResult{err: err})
			continue
		}
		b.done.Store(true)
		b.log.Printf("upgraded: master pid %d took over; draining this master's workers", pid)
		b.onEvent("upgrade-done", pid, "")
		answer(upgradeResult{pid: pid})
		handedOver(pid)
		return
	}
}

func (b *binaryUpgrade) once(socks *handoff.Sockets) (int, error) {
	b.log.Printf("SIGUSR2: upgrading to %s", os.Args[0])
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
	u := upgradeState{gen: b.gen.Load(), pidfile: dir.Join("pid")}
	if socks != nil {
		if err := socks.Persist(); err != nil {
			return 0, err
		}
		u.prev = socks.Handover()
	}
	if b.upg.HasParent() && !b.parentGone.Load() {
		return 0, fmt.Errorf("the previous master is still draining; upgrade again once it has exited")
	}
	os.Setenv(envUpgrade, u.String())
	for try := 0; ; try++ {
		err = b.upg.Upgrade()
		// tableflip learns of its parent's exit in its own goroutine: just
		// after the exit it may still refuse. Bounded: its loop takes the
		// exit at its next turn.
		if err == nil || !b.parentGone.Load() || !strings.Contains(err.Error(), "parent hasn't exited") || try == 10 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.Unsetenv(envUpgrade)
	if err != nil && strings.Contains(err.Error(), "not ready yet") {
		return 0, fmt.Errorf("this master is not serving yet; upgrade once it is")
	}
	if err != nil {
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
