// Package protocol fixes the names and numbers that the master (package
// workers) and the worker library (package child) both depend on. It holds no
// logic: changing a value here changes the worker contract in DESIGN.md.
// The worker library, a module of its own, keeps a copy of the names it
// needs (child/internal/protocol); the e2e tests check that they agree.
package protocol

// ListenFdsStart is the first inherited listening descriptor, as in systemd's
// socket-activation protocol (SD_LISTEN_FDS_START).
const ListenFdsStart = 3

// Environment variables of systemd's protocols, set for every worker.
const (
	// EnvListenFds is the number of inherited sockets, starting at fd 3.
	EnvListenFds = "LISTEN_FDS"
	// EnvListenFdNames is a colon-separated list of names, one per socket.
	EnvListenFdNames = "LISTEN_FDNAMES"
	// EnvListenPID is the PID the sockets are meant for: the worker's own.
	EnvListenPID = "LISTEN_PID"
	// EnvWatchdogUsec is the interval, in microseconds, within which a
	// worker must send WATCHDOG=1 (hotcluster run --watchdog), and
	// EnvWatchdogPID the PID it is meant for: the worker's own, set by the
	// shim as LISTEN_PID is.
	EnvWatchdogUsec = "WATCHDOG_USEC"
	EnvWatchdogPID  = "WATCHDOG_PID"
	// EnvNotifySocket is the path of the worker's own datagram socket that
	// speaks systemd's notify protocol (READY=1, STATUS=..., STOPPING=1).
	EnvNotifySocket = "NOTIFY_SOCKET"
)

// Environment variables hotcluster sets for every worker.
const (
	// EnvWorkerID is the worker's slot number, from 0.
	EnvWorkerID = "HOTCLUSTER_WORKER_ID"
	// EnvGeneration is the generation number, from 1, growing with each reload.
	EnvGeneration = "HOTCLUSTER_GENERATION"
	// EnvWorkers is the number of workers in the group.
	EnvWorkers = "HOTCLUSTER_WORKERS"
)

// EnvShim is set only in the short-lived re-exec of hotcluster's own binary
// that sets LISTEN_PID to its PID and then execve()s the user's command, to
// the PID of the master that started it: the shim's parent must still be
// that process once the parent-death signal is armed (a master that is PID 1
// of a container is 1, so "the parent is 1" cannot mean "the master died").
// The shim removes it before the exec, so a worker never sees it.
const EnvShim = "HOTCLUSTER_SHIM"

// EnvInterceptFd names, for the shim only, its end of the socket pair over
// which it sends the master the notification descriptor of the seccomp
// filter that intercepts the worker's bind and listen calls (see package
// internal/intercept). The shim removes it, and closes the descriptor,
// before the exec.
const EnvInterceptFd = "HOTCLUSTER_INTERCEPT_FD"

// Notify protocol messages (systemd's sd_notify).
const (
	NotifyReady    = "READY=1"
	NotifyStopping = "STOPPING=1"
	NotifyStatus   = "STATUS="
	NotifyWatchdog = "WATCHDOG=1"
	// NotifyWatchdogTrigger asks for the watchdog's action at once.
	NotifyWatchdogTrigger = "WATCHDOG=trigger"
	// NotifyDrainsKeepAlive, sent with READY=1 (a variable of hotcluster's
	// own: sd_notify's X_ prefix, which systemd ignores), says the worker
	// drains its keep-alive connections itself: while it stops it answers
	// with "Connection: close" and closes an idle connection only after a
	// grace, so the master's keep-alive rescue need not keep it from
	// reading requests that arrive after its stop signal.
	NotifyDrainsKeepAlive = "X_HOTCLUSTER_DRAINS=keep-alive"
)

// The message channel of a worker (one end of a socket pair, one JSON value
// per line).
const (
	// EnvIPCFd is the channel's descriptor number, after the listeners.
	EnvIPCFd = "HOTCLUSTER_IPC_FD"
	// EnvNodeChannelFd and EnvNodeChannelMode announce the same descriptor to
	// Node.js, whose process.send and process.on('message') then use it.
	EnvNodeChannelFd   = "NODE_CHANNEL_FD"
	EnvNodeChannelMode = "NODE_CHANNEL_SERIALIZATION_MODE"
	// IPCReady is PM2's readiness message: a worker sending it is ready, as
	// with READY=1.
	IPCReady = "ready"
	// IPCMaxLine bounds one message; a longer line is dropped.
	IPCMaxLine = 1 << 20
)

// MaxWorkers bounds a group's size, however it is asked for (--workers,
// scale, SIGTTIN): a typo must not fork a million processes.
const MaxWorkers = 4096
