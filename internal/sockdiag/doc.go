// Package sockdiag asks the kernel about the TCP and UDP sockets on a port,
// so that the master can tell when every connection an old worker
// generation accepted or still has queued has had its request bytes read,
// and which sockets other than its own listen on its addresses.
//
// The invariant callers rely on: a [Conn] with RxQueue == 0 and
// BytesReceived > 0 is a connection whose bytes, as far as they have arrived,
// have all been read by some process. A Conn with Inode == 0 in a connected
// state is not owned by any file: it waits in a listener's accept queue (or,
// after its owner closed it, is being torn down by the kernel).
//
// # Protocol
//
// [TCP] sends one NETLINK_SOCK_DIAG dump request per address family (AF_INET,
// then AF_INET6) and reads the multi-part reply until NLMSG_DONE. The request
// sets inet_diag_req_v2.id.idiag_sport, which the kernel's TCP dump has
// honoured for listening and connected sockets since Linux 2.6, so sockets of
// other ports are skipped before they are formatted; the results are filtered
// again by port and state in user space, because the kernel's walk of
// bound-but-inactive sockets (Linux 6.8+) ignores idiag_sport. Each reply
// carries struct tcp_info (INET_DIAG_INFO), from which tcpi_bytes_received is
// read.
//
// [ListenQueue] reads the accept-queue length of one listening socket with
// getsockopt(TCP_INFO) through a [syscall.RawConn], which, unlike
// (*os.File).Fd, leaves the descriptor non-blocking.
//
// [UDP] sends the same requests for IPPROTO_UDP (no tcp_info is asked
// for). Listening TCP sockets and unconnected UDP sockets of AF_INET6 carry
// INET_DIAG_SKV6ONLY, read into Conn.V6Only, which tells a dual-stack
// socket on [::] from an IPv6-only one.
//
// # Using it to wait for a generation
//
// TCP lists every socket on the port, whichever socket of an SO_REUSEPORT
// group it came through, and a queued connection (Inode 0) does not name its
// listener: use [ListenQueue] on the old listener for its accept queue, and
// Conn.Cookie to follow the connections that existed at the switch, since
// new ones keep arriving on the port while the old ones drain.
//
// # Multipath TCP
//
// For an MPTCP connection (an MPTCP listener, as net.Listen makes since
// Go 1.24, and a client that speaks MPTCP) the kernel lists the TCP subflows.
// Data moves from a subflow to the MPTCP socket before the application reads
// it, so a subflow shows RxQueue 0 while bytes are still unread. The answers
// here are only meaningful for plain TCP listeners; package handoff creates
// its listeners with Multipath TCP off. Connections that fall back to plain
// TCP (an MPTCP listener, a plain client) are reported correctly.
//
// # Running under systemd
//
// No privileges are needed. The kernel answers only about sockets in the
// caller's network namespace, so the master and its workers must share one
// (they do unless PrivateNetwork= or JoinsNamespaceOf= split them). A unit
// with RestrictAddressFamilies= must allow AF_NETLINK, or [TCP] fails with an
// error wrapping [ErrNotSupported].
package sockdiag
