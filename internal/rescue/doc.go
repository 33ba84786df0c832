// Package rescue keeps the connections that a turnover would otherwise
// lose: those left in the accept queue of a socket whose generation is
// gone, and the keep-alive connections that old workers close, at their
// stop signal, while their clients' next requests are already on the way.
//
// Invariant: nothing a client sent is ever consumed by the master before it
// is relayed, so a relayed connection goes on exactly as if the serving
// generation had accepted it; a connection is relayed only where the old
// worker left it at a boundary (an empty queue, or a client's next HTTP/1.x
// request unread and nothing read unanswered), and otherwise closed or reset
// as the worker's own close would have, never worse. Everything held is
// bounded in number (Config.Max) and time (Config.HoldTimeout, RequestWait,
// HalfCloseTimeout), and one goroutine (Rescuer.Run) owns it.
//
// # Stranded queues (any protocol)
//
// Once no worker holds a retired socket of a steered listener, package
// handoff accepts what is still queued on it and gives it to Stranded. Each
// connection is relayed, for its life, to a fresh connection that the
// master dials on the same listener, which the selector hands to the
// serving generation: an L4 relay with splice(2) through a pipe, so bytes
// never enter user space (see pump). TLS and any other protocol work, since
// nothing was read. One line is logged per burst.
//
// # Keep-alive rescue (HTTP mode)
//
// Just before the pool sends a worker its stop signal, Hold takes a
// duplicate, with pidfd_getfd(2), of every established connection the
// worker holds on an HTTP-mode listener. When the worker then closes an idle
// keep-alive connection, no FIN goes out: the master still holds it. Hold
// also keeps the worker from reading requests that arrive after its stop
// signal: a non-blocking socket is frozen (SO_RCVLOWAT, see freeze) and
// thawed if the worker still serves it ThawAfter later; a worker that reads
// with blocking reads, a thread per connection, is stopped (SIGSTOP) at a
// moment when each of its connections has a thread waiting in its read
// (see quiesce), so that a stop signal that kills it ends no request half
// done; meanwhile its clients' new data is held back (a socket filter
// drops it and their kernels send it again, see holdBack), so the moment
// comes as soon as the requests under way are answered. Run notices,
// within a tick (2 ms), that the worker let go of a connection: it
// watches each holder's descriptor count (stat(2) of
// /proc/PID/fd, Linux 6.2+) and on a change asks kcmp(2) whether each
// descriptor still refers to the same open file (else /proc/PID/fd/N). Then
// it decides (see decide): relayed to the serving generation if the
// client's next request waits unread and begins with a request line, for
// that one request (oneshot.go: Connection: close is added to the request
// and to its answer, so the client reconnects straight to the serving
// generation); closed if the client sent nothing since its last answer,
// after waiting for a request on its way (IdleWait after an idle close,
// NextRequestWait after an answer, which may be delimited by the close);
// reset otherwise (bytes the worker read and never answered, a TLS record,
// the HTTP/2 preface), which is what the worker's own close with unread
// bytes does. Holding costs the connection nothing: the master never reads
// it until the worker has let go.
//
// Taking a worker's descriptor needs ptrace rights over it, which a parent
// has unless Yama forbids it (ptrace_scope 2 or 3), the worker is not
// dumpable, or it runs as another user without CAP_SYS_PTRACE; Hold then
// logs once why and holds nothing from then on (stranded queues are still
// relayed).
//
// # Relays across reloads and upgrades
//
// A relay's upstream is a connection on the listener like any other, held
// by a worker of the serving generation; when that generation is replaced,
// Hold takes the worker's end of it too. When the worker lets go, the relay
// decides as for any held connection, with what it carried counted in: it
// stops reading from its client, lets what it had sent reach the worker's
// end, and either goes on to a new upstream at the request boundary (moving
// the unread request there first, and the old worker's last answer to the
// client), or ends as the worker ended the connection. So a relay survives
// any number of reloads, through one hop.
//
// On a binary upgrade the old master hands its relays to the new one: when
// it ends (its workers drained), each relay is stopped with nothing in
// flight in the master and its two descriptors go over a socket pair that
// the upgrade passed on (RelaysFile); the new master relays them from
// there. The old master does not wait for its relays, which may live as
// long as their clients keep them.
//
// # Notes
//
// The master's duplicate shares the worker's open file description, so it
// changes nothing on it (not O_NONBLOCK, which a worker doing blocking
// reads relies on) until the worker has let go. A worker's epoll
// registration of a descriptor it closed stays as long as the master holds
// the file; servers that unregister before they close (Go, libuv, Python's
// selectors) do not notice.
package rescue
