package master

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hotcluster/hotcluster/internal/systemd"
	"github.com/hotcluster/hotcluster/workers"
)

// serviceState turns the worker group's events into systemd notifications.
// The pool calls event from its own goroutine, which must not block on the
// service manager: messages queue here and one goroutine (run) sends them.
type serviceState struct {
	n   *systemd.Notifier
	log *slog.Logger
	// alive says whether the pool's loop answers: the watchdog is fed
	// only then.
	alive   func(context.Context) bool
	msgs    chan func() error
	serving uint64       // generation serving; touched by event only
	status  atomic.Value // string: the last READY status
}

func newServiceState(n *systemd.Notifier, log *slog.Logger, alive func(context.Context) bool) *serviceState {
	return &serviceState{n: n, log: log, alive: alive, msgs: make(chan func() error, 64)}
}

func (s *serviceState) queue(f func() error) {
	if !s.n.Enabled() {
		return
	}
	select {
	case s.msgs <- f:
	default:
		// The service manager is not reading; a later message supersedes.
	}
}

// event maps a pool event to the notify protocol (see DESIGN.md, systemd):
// READY=1 once the first generation serves; RELOADING=1 when a later one
// starts and READY=1 when it serves or failed, with the reason in STATUS=.
func (s *serviceState) event(e workers.Event) {
	switch e.Kind {
	case workers.GenStarting:
		if s.serving != 0 {
			st := fmt.Sprintf("reloading: gen %d starting, gen %d serving", e.Gen, s.serving)
			s.queue(func() error { return s.n.Reloading(st) })
		}
	case workers.GenReady:
		first := s.serving == 0
		s.serving = e.Gen
		st := fmt.Sprintf("serving gen %d with %d workers", e.Gen, e.Workers)
		s.status.Store(st)
		if !first {
			s.queue(func() error { return s.n.Ready(st) })
		}
		// The first READY=1 waits for started: by then an upgrade works.
	case workers.RolloutBatch, workers.RolloutBack:
		verb := "rollout"
		if e.Kind == workers.RolloutBack {
			verb = "rolling back"
		}
		st := fmt.Sprintf("reloading: %s %d/%d: gen %d replaces gen %d", verb, e.Replaced, e.Workers, e.Gen, s.serving)
		s.queue(func() error { return s.n.Status(st) })
	case workers.GenErrored:
		why, _, _ := strings.Cut(e.Err, "\n")
		st := fmt.Sprintf("errored: no worker of gen %d is left (%s); waiting for a reload", e.Gen, why)
		s.status.Store(st)
		s.queue(func() error { return s.n.Status(st) })
	case workers.GenFailed:
		// The reason's first line; the worker's output follows in the log.
		why, _, _ := strings.Cut(e.Err, "\n")
		e.Err = why
		if s.serving != 0 {
			st := fmt.Sprintf("reload failed: gen %d %s; gen %d keeps serving", e.Gen, e.Err, s.serving)
			s.queue(func() error { return s.n.Ready(st) })
		} else {
			st := fmt.Sprintf("gen %d failed: %s", e.Gen, e.Err)
			s.queue(func() error { return s.n.Status(st) })
		}
	}
}

// refused tells the service manager why a reload did not even start (the
// config file no longer loads): a STATUS= line for systemctl status. Safe
// from any goroutine: it only queues.
func (s *serviceState) refused(err error) {
	why, _, _ := strings.Cut(err.Error(), "\n")
	st := "reload refused: " + why
	s.queue(func() error { return s.n.Status(st) })
}

// started sends the first READY=1, once the master serves and can be
// upgraded.
func (s *serviceState) started() {
	st, _ := s.status.Load().(string)
	s.queue(func() error { return s.n.Ready(st) })
}

// becameMain repeats READY=1 and the status once the master that started
// this one by an upgrade has exited: systemd ignored them until then
// (NotifyAccess=main and MAINPID still named the old master).
func (s *serviceState) becameMain() {
	st, _ := s.status.Load().(string)
	if st == "" {
		return
	}
	s.queue(func() error { return s.n.Ready(st) })
}

// handedOver names the new master after an upgrade, before this one
// drains and exits (systemd then follows the new main PID).
func (s *serviceState) handedOver(pid int) {
	s.queue(func() error { return s.n.MainPID(pid) })
}

// stopping says the master drains and may take drain to do so.
func (s *serviceState) stopping(drain time.Duration) {
	s.queue(func() error { return s.n.Stopping("stopping: draining workers", drain) })
}

// run sends queued messages and the watchdog until ctx ends, then the
// messages still queued.
func (s *serviceState) run(ctx context.Context) {
	wd := make(chan struct{})
	go func() {
		defer close(wd)
		if err := s.n.Watchdog(ctx, s.alive); err != nil {
			s.log.Warn(err.Error())
		}
	}()
	defer func() { <-wd }()
	for {
		select {
		case f := <-s.msgs:
			if err := f(); err != nil {
				s.log.Warn(err.Error())
			}
		case <-ctx.Done():
			for {
				select {
				case f := <-s.msgs:
					if err := f(); err != nil {
						s.log.Warn(err.Error())
					}
				default:
					return
				}
			}
		}
	}
}
