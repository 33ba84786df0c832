// Package protocol fixes the names and numbers of the worker contract
// (DESIGN.md) as the worker library sees them. The master's copy is the
// hotcluster module's internal/protocol: the two modules share no package,
// so that a program importing child depends on nothing of the master's.
// The e2e tests check that the two copies agree.
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
