// Package child is what a Go worker program imports to run under hotcluster:
// it takes the listening sockets the master passed down, reports readiness,
// and drains an http.Server on the stop signal without losing a request.
//
// Invariant: the library never makes an inherited socket blocking. The
// O_NONBLOCK flag lives on the open file description that the master, every
// worker and a future master share; a worker that cleared it would leave the
// others hanging in accept while they drain. So inherited descriptors are
// handled as raw integers, and (*os.File).Fd, which clears the flag on files
// the os package put into non-blocking mode, never sees one of them. The
// worker contract says inherited sockets are already non-blocking; Go's net
// package sets the flag on a socket that is not (see "Under systemd").
//
// # Protocol
//
// The master starts every worker with systemd's socket-activation protocol
// (internal/protocol holds the names):
//
//   - fds 3 … 3+LISTEN_FDS−1 are the listening sockets, in the order of the
//     master's --listen flags, named by the colon-separated LISTEN_FDNAMES;
//   - LISTEN_PID is the worker's own PID; the sockets are ignored when it
//     names another process (they were meant for a parent);
//   - NOTIFY_SOCKET is a datagram socket speaking systemd's notify protocol;
//   - HOTCLUSTER_WORKER_ID, HOTCLUSTER_GENERATION and HOTCLUSTER_WORKERS
//     identify the worker.
//
// The environment is read once, on the first call of any function of this
// package. At that moment the inherited descriptors are marked close-on-exec
// and LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID and NOTIFY_SOCKET are removed
// from the environment, so the worker's own subprocesses inherit neither the
// sockets nor the master's notify socket. Call [Listen] early, before the
// program starts subprocesses of its own.
//
// The first [Listen] or [ListenPacket] on an inherited socket sends
// "STATUS=starting" to the notify socket: the master takes any message as a
// sign that the program speaks the protocol and then waits for [Ready]'s
// "READY=1" before it moves traffic to the new generation. [ServeHTTP] calls
// Ready once the server accepts.
//
// # Run by hand
//
// Without inherited sockets [Listen] and [ListenPacket] bind the given
// address themselves, [Ready] and [Notify] do nothing, and [ServeHTTP] also
// stops on SIGINT, so the same program runs in a terminal unchanged.
//
// # Under systemd
//
// The protocol is systemd's, so a worker also runs directly as a
// socket-activated Type=notify service. Give the socket unit NonBlocking=yes:
// Go's net package needs a non-blocking socket and would otherwise switch it
// itself.
package child
