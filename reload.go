package main

import (
	"fmt"
	"log"
	"reflect"
	"slices"
	"sync"

	"github.com/hotcluster/hotcluster/workers"
	"github.com/urfave/cli/v2"
)

// argsKey is where run keeps the command line in the app's Metadata: a
// reload parses it again, with the config file as it is now.
const argsKey = "args"

// reloader re-reads the master's command line and config file at each
// reload.
type reloader struct {
	args []string
	log  *log.Logger
	mu   sync.Mutex
	// last is the configuration as last read; the sockets and the rest of
	// what only an upgrade changes compare against the first.
	last, first *runConfig
}

func newReloader(c *cli.Context, rc *runConfig, logger *log.Logger) *reloader {
	args, _ := c.App.Metadata[argsKey].([]string)
	return &reloader{args: args, log: logger, last: rc, first: rc}
}

// update parses the command line and config file again and returns what
// the next generation takes from them: command, environment, worker count
// and timeouts. A file that no longer parses or validates is an error, and
// the reload does not happen. The worker count applies only when the file
// changed it, so that a reload keeps a scale made since.
func (r *reloader) update() (*workers.Update, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.args) == 0 {
		return &workers.Update{}, nil
	}
	nrc, err := reparseRun(r.args)
	if err != nil {
		return nil, fmt.Errorf("%w; the serving generation keeps serving", err)
	}
	rc := r.first
	np := nrc.pool
	u := &workers.Update{
		Env:          append([]string{}, np.Env...),
		ReadyDelay:   np.ReadyDelay,
		ReadyTimeout: np.ReadyTimeout,
		DrainTimeout: np.DrainTimeout,
	}
	if np.Workers != r.last.pool.Workers {
		u.Workers = np.Workers
	}
	r.last = nrc
	if np.Command.Path != "" {
		u.Command = &np.Command
	}
	// What the sockets, the workers' user and the control socket were made
	// with stays until the next upgrade (SIGUSR2), which re-reads all.
	var fixed []string
	if !reflect.DeepEqual(nrc.sockets.Specs, rc.sockets.Specs) {
		fixed = append(fixed, "listen")
	}
	if nrc.sockets.Shared != rc.sockets.Shared {
		fixed = append(fixed, "handoff")
	}
	if !reflect.DeepEqual(np.Credential, rc.pool.Credential) {
		fixed = append(fixed, "user")
	}
	if nrc.name != rc.name || nrc.control != rc.control {
		fixed = append(fixed, "name/control")
	}
	if nrc.metrics != rc.metrics {
		fixed = append(fixed, "metrics")
	}
	if np.IPC != rc.pool.IPC || np.StopSignal != rc.pool.StopSignal || np.Ready != rc.pool.Ready || np.Dir != rc.pool.Dir {
		fixed = append(fixed, "ipc/stop-signal/ready/dir")
	}
	if nrc.maxMemory != rc.maxMemory {
		fixed = append(fixed, "max-memory")
	}
	if len(fixed) > 0 {
		slices.Sort(fixed)
		r.log.Printf("reload: %v changed; that takes effect at the next upgrade (SIGUSR2) or restart, the rest now", fixed)
	}
	return u, nil
}
