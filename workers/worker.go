package workers

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/protocol"
	"golang.org/x/sys/unix"
)

// workerState is where a worker is in its life, as the pool loop sees it.
type workerState int

const (
	starting workerState = iota
	ready
	draining
)

func (s workerState) String() string {
	return [...]string{"starting", "ready", "draining"}[s]
}

// stopTimers stops every timer of the worker's; the loop calls it when the
// worker leaves it.
func (w *worker) stopTimers() {
	for _, t := range []*time.Timer{w.drain, w.delay, w.timeout, w.watchdog, w.stopSig} {
		if t != nil {
			t.Stop()
		}
	}
}

// worker is one child process. Its fields belong to the pool loop; proc
// and tail are safe to use from any goroutine.
type worker struct {
	gen     uint64
	slot    int
	pid     int
	proc    process
	started time.Time
	state   workerState
	spoke   bool // sent anything on its notify socket
	// drainsKeepAlive: it said it drains its keep-alive connections
	// itself (protocol.NotifyDrainsKeepAlive).
	drainsKeepAlive bool
	status          string
	drain           *time.Timer
	stopSig         *time.Timer // the stop signal, when Config.BeforeStop delays it
	delay           *time.Timer
	timeout         *time.Timer // a standby's --ready-timeout
	// readyAt is when it became ready; pinged when it last sent
	// WATCHDOG=1 (or became ready); watchdog fires when that is too long
	// ago (Config.Watchdog).
	readyAt, pinged time.Time
	watchdog        *time.Timer
	// hung: it missed its watchdog deadline; it is replaced and aborted.
	hung bool
	// outbox feeds the writer of its message channel (nil without one);
	// the pool never blocks on it.
	outbox chan []byte
	// listening says, per listener, whether it called listen(2) on the
	// socket (nil until it did on one).
	listening []bool
	// restarts counts the respawns of its slot in its generation before
	// it; prevExit says how the worker it replaced ended, and when.
	restarts   int
	prevExit   string
	prevExitAt time.Time

	tail tail
}

// process is what the pool does to a worker's process. The real one
// (spawn_linux.go) acts on its process group; the pool's tests use fakes.
type process interface {
	// signal sends sig to the worker's process group, unless the worker
	// has exited (its PID, and so the group's ID, may be reused then).
	signal(sig syscall.Signal)
	// holds says which of the socket inodes the process or one it started
	// holds (see heldSockets); ok is false when that cannot be told.
	holds(inodes []uint64) (held []bool, ok bool)
	// gone reports whether the process has exited, reaped or not.
	gone() bool
}

// signal sends sig to the worker's process group, unless it has exited.
func (w *worker) signal(sig syscall.Signal) { w.proc.signal(sig) }

func (w *worker) String() string {
	return fmt.Sprintf("gen %d worker %d (pid %d)", w.gen, w.slot, w.pid)
}

// spawnSpec is everything a new worker process needs.
type spawnSpec struct {
	gen   uint64
	slot  int
	size  int
	files []*os.File // listeners, closed by spawn
	names []string
	cmd   Command
	env   []string // K=V added to the master's environment
	ipc   IPCMode  // resolved: IPCOff, IPCOn or IPCNode
}

// workerEnv is the master's environment without what belongs to the master
// (its own systemd variables, stale hotcluster ones), then --env, then the
// worker contract, which wins.
func (p *Pool) workerEnv(s spawnSpec, notifySock string) []string {
	drop := map[string]bool{
		protocol.EnvListenFds: true, protocol.EnvListenFdNames: true, protocol.EnvListenPID: true,
		protocol.EnvNotifySocket: true, protocol.EnvWatchdogUsec: true, protocol.EnvWatchdogPID: true,
		protocol.EnvNodeChannelFd: true, protocol.EnvNodeChannelMode: true,
	}
	for _, kv := range s.env {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	env := make([]string, 0, len(p.baseEnv)+len(s.env)+8)
	for _, kv := range p.baseEnv {
		k, _, _ := strings.Cut(kv, "=")
		if drop[k] || strings.HasPrefix(k, "HOTCLUSTER_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, s.env...)
	if len(s.names) > 0 {
		env = append(env,
			protocol.EnvListenFds+"="+strconv.Itoa(len(s.names)),
			protocol.EnvListenFdNames+"="+strings.Join(s.names, ":"))
	}
	if s.ipc != IPCOff {
		fd := strconv.Itoa(protocol.ListenFdsStart + len(s.names))
		env = append(env, protocol.EnvIPCFd+"="+fd)
		if s.ipc == IPCNode {
			env = append(env, protocol.EnvNodeChannelFd+"="+fd, protocol.EnvNodeChannelMode+"=json")
		}
	}
	if d := p.cfg.Watchdog; d > 0 {
		env = append(env, protocol.EnvWatchdogUsec+"="+strconv.FormatInt(d.Microseconds(), 10))
	}
	return append(env,
		protocol.EnvNotifySocket+"="+notifySock,
		protocol.EnvWorkerID+"="+strconv.Itoa(s.slot),
		protocol.EnvGeneration+"="+strconv.FormatUint(s.gen, 10),
		protocol.EnvWorkers+"="+strconv.Itoa(s.size),
		protocol.EnvShim+"="+strconv.Itoa(os.Getpid()),
	)
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// killedFromOutside reports whether a process was ended by a signal that
// others send (SIGKILL, SIGTERM, SIGINT) rather than one it brings on
// itself (SIGSEGV, SIGABRT, …) or an exit.
func killedFromOutside(ws *syscall.WaitStatus) bool {
	if ws == nil || !ws.Signaled() {
		return false
	}
	switch ws.Signal() {
	case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT:
		return true
	}
	return false
}

// exitDescription says how a process ended: its exit code or the signal
// that killed it.
func exitDescription(ws *syscall.WaitStatus, err error) string {
	switch {
	case ws == nil && err != nil:
		return err.Error()
	case ws == nil:
		return "unknown status"
	case ws.Signaled():
		how := "killed by signal " + unix.SignalName(ws.Signal()) + " (" + ws.Signal().String() + ")"
		if ws.CoreDump() {
			how += ", core dumped"
		}
		return how
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	}
	return fmt.Sprintf("wait status %#x", uint32(*ws))
}
