package master

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"

	"github.com/hotcluster/hotcluster/workers"
)

// reloader reads the master's command line and config file again at each
// reload (Config.Reparse).
type reloader struct {
	reparse func() (*Config, error)
	log     *slog.Logger
	mu      sync.Mutex
	// last is the configuration as last read; the sockets and the rest of
	// what only an upgrade changes compare against the first.
	last, first *Config
	// check refuses a --rollout the sockets cannot do (checkRollout).
	check func(workers.Rollout) error
}

func newReloader(first *Config, log *slog.Logger) *reloader {
	return &reloader{reparse: first.Reparse, log: log, last: first, first: first}
}

// update parses the command line and config file again and returns what
// the next generation takes from them: command, environment, worker count
// and timeouts. A file that no longer parses or validates is an error, and
// the reload does not happen. The worker count applies only when the file
// changed it, so that a reload keeps a scale made since.
func (r *reloader) update() (*workers.Update, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reparse == nil {
		return &workers.Update{}, nil
	}
	next, err := r.reparse()
	if err != nil {
		return nil, fmt.Errorf("%w; the serving generation keeps serving", err)
	}
	first := r.first
	np := next.Pool
	if r.check != nil {
		if err := r.check(np.Rollout); err != nil {
			return nil, fmt.Errorf("%w; the serving generation keeps serving", err)
		}
	}
	u := &workers.Update{
		Env:          append([]string{}, np.Env...),
		ReadyDelay:   np.ReadyDelay,
		ReadyTimeout: np.ReadyTimeout,
		DrainTimeout: np.DrainTimeout,
		Rollout:      &np.Rollout,
	}
	if np.Workers != r.last.Pool.Workers {
		u.Workers = np.Workers
	}
	r.last = next
	if np.Command.Path != "" {
		u.Command = &np.Command
	}
	// What the sockets, the workers' user and the control socket were made
	// with stays until the next upgrade (SIGUSR2), which re-reads all.
	fp := first.Pool
	var fixed []string
	if !reflect.DeepEqual(next.Sockets.Specs, first.Sockets.Specs) {
		fixed = append(fixed, "listen")
	}
	if next.Sockets.Shared != first.Sockets.Shared {
		fixed = append(fixed, "handoff")
	}
	if next.Sockets.Balance != first.Sockets.Balance {
		fixed = append(fixed, "balance")
	}
	if !reflect.DeepEqual(np.Credential, fp.Credential) {
		fixed = append(fixed, "user")
	}
	if next.Name != first.Name || next.Control != first.Control {
		fixed = append(fixed, "name/control")
	}
	if next.Metrics != first.Metrics {
		fixed = append(fixed, "metrics")
	}
	if next.Health != first.Health || next.ShutdownDelay != first.ShutdownDelay {
		fixed = append(fixed, "health/shutdown-delay")
	}
	if np.IPC != fp.IPC || np.StopSignal != fp.StopSignal || np.Ready != fp.Ready || np.Dir != fp.Dir {
		fixed = append(fixed, "ipc/stop-signal/ready/dir")
	}
	if np.Intercept != fp.Intercept {
		fixed = append(fixed, "intercept-bind")
	}
	if next.MaxMemory != first.MaxMemory {
		fixed = append(fixed, "max-memory")
	}
	if next.NoCgroup != first.NoCgroup {
		fixed = append(fixed, "cgroup")
	}
	if next.Sockets.Nagle != first.Sockets.Nagle || next.Sockets.QuietTimeout != first.Sockets.QuietTimeout {
		fixed = append(fixed, "nodelay/quiet-timeout")
	}
	if np.MaxRestarts != fp.MaxRestarts || np.RestartWindow != fp.RestartWindow || np.Watchdog != fp.Watchdog {
		fixed = append(fixed, "max-restarts/restart-window/watchdog")
	}
	nl, fl := next.Log, first.Log
	nl.Color, fl.Color = false, false // the terminal's, not the command line's
	if !reflect.DeepEqual(nl, fl) {
		fixed = append(fixed, "log-*")
	}
	if len(fixed) > 0 {
		slices.Sort(fixed)
		r.log.Warn(fmt.Sprintf("reload: %v changed; that takes effect at the next upgrade (SIGUSR2) or restart, the rest now", fixed))
	}
	return u, nil
}
