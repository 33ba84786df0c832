package child

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/child/internal/protocol"
)

// unnamed is the name of an inherited socket that LISTEN_FDNAMES does not
// name, as in systemd's sd_listen_fds_with_names.
const unnamed = "unknown"

// socket is one inherited descriptor.
type socket struct {
	fd   int
	name string
	// taken is set once Listen or ListenPacket took the descriptor; the
	// library has closed it then (the listener holds a duplicate).
	taken bool
	// closed is set once Ready closed the descriptor because nothing took it.
	closed bool
}

// environ is what the master passed down. It is built once by load; after
// that only the fields marked as guarded by mu change.
type environ struct {
	sockets    []*socket
	notify     string
	generation int
	workerID   int
	workers    int
	watchdog   time.Duration
	// err is a malformed LISTEN_FDS, or a failure to mark an inherited
	// descriptor close-on-exec; Listen and ListenPacket return it.
	err error

	mu       sync.Mutex // guards socket.taken, socket.closed and started
	started  bool       // STATUS=starting was sent
	starting error      // the result of sending it
}

// parseEnv reads the worker environment through getenv for the process pid.
// It has no side effects, so tests can call it with a fake environment.
func parseEnv(getenv func(string) string, pid int) *environ {
	e := &environ{
		notify:     getenv(protocol.EnvNotifySocket),
		generation: atoiOr(getenv(protocol.EnvGeneration), 0),
		workerID:   atoiOr(getenv(protocol.EnvWorkerID), -1),
		workers:    atoiOr(getenv(protocol.EnvWorkers), 0),
	}
	// As sd_watchdog_enabled(3): an interval meant for another process
	// (WATCHDOG_PID) is not ours.
	if us, err := strconv.ParseInt(getenv(protocol.EnvWatchdogUsec), 10, 64); err == nil && us > 0 {
		if p := getenv(protocol.EnvWatchdogPID); p == "" || p == strconv.Itoa(pid) {
			e.watchdog = time.Duration(us) * time.Microsecond
		}
	}
	fds := getenv(protocol.EnvListenFds)
	if fds == "" {
		return e
	}
	// Sockets meant for another process (our parent, which forgot to unset
	// the variables) are not ours to touch; systemd's sd_listen_fds agrees.
	if p, err := strconv.Atoi(getenv(protocol.EnvListenPID)); err != nil || p != pid {
		return e
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		e.err = fmt.Errorf("child: parse %s=%q: want a number of descriptors", protocol.EnvListenFds, fds)
		return e
	}
	var names []string
	if s := getenv(protocol.EnvListenFdNames); s != "" {
		names = strings.Split(s, ":")
	}
	for i := range n {
		name := unnamed
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		e.sockets = append(e.sockets, &socket{fd: protocol.ListenFdsStart + i, name: name})
	}
	return e
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

var (
	envOnce sync.Once
	envCur  *environ
)

// load returns the process's worker environment, reading it on first use:
// it marks the inherited descriptors close-on-exec and removes the socket
// and notify variables from the environment, so that subprocesses of the
// worker inherit neither.
func load() *environ {
	envOnce.Do(func() {
		e := parseEnv(os.Getenv, os.Getpid())
		for _, k := range []string{protocol.EnvListenFds, protocol.EnvListenFdNames, protocol.EnvListenPID, protocol.EnvNotifySocket,
			protocol.EnvWatchdogUsec, protocol.EnvWatchdogPID} {
			os.Unsetenv(k)
		}
		for _, s := range e.sockets {
			if err := closeOnExec(s.fd); err != nil && e.err == nil {
				e.err = fmt.Errorf("child: inherited socket %q (fd %d): %w", s.name, s.fd, err)
			}
		}
		envCur = e
	})
	return envCur
}

// supervised reports whether the program runs under a supervisor rather than
// by hand: it inherited sockets, a notify socket or a generation number.
func (e *environ) supervised() bool {
	return len(e.sockets) > 0 || e.notify != "" || e.generation > 0
}

// Generation returns the worker's generation number (HOTCLUSTER_GENERATION),
// from 1 and growing with each reload, or 0 when the program runs by hand.
func Generation() int { return load().generation }

// WorkerID returns the worker's slot number in its generation
// (HOTCLUSTER_WORKER_ID), from 0, or -1 when the program runs by hand.
func WorkerID() int { return load().workerID }

// Workers returns the number of workers in the generation
// (HOTCLUSTER_WORKERS), or 0 when the program runs by hand.
func Workers() int { return load().workers }

// WatchdogInterval returns the interval within which the worker must send
// "WATCHDOG=1" ([Notify]) once it is ready, or 0 when no watchdog is asked
// for (hotcluster run without --watchdog, or by hand). Send it at half the
// interval or more often, from the code whose progress it vouches for: a
// worker that misses it is taken as hung, replaced and aborted.
func WatchdogInterval() time.Duration { return load().watchdog }

// Names returns the names of the inherited sockets in descriptor order, as
// LISTEN_FDNAMES gave them ("unknown" where it gave none), or nil when the
// program inherited none, for example because it runs by hand. The result
// includes sockets already taken.
func Names() []string {
	e := load()
	if len(e.sockets) == 0 {
		return nil
	}
	names := make([]string, len(e.sockets))
	for i, s := range e.sockets {
		names[i] = s.name
	}
	return names
}
