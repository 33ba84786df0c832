package sockdiag

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// recvBufSize is the size of the buffer dump replies are read into. The
	// kernel sizes a dump's datagrams after the reader's buffer but never
	// beyond 32 KiB (netlink_dump, max_recvmsg_len), so a datagram always fits;
	// a truncated one is reported as an error, never parsed.
	recvBufSize = 32 << 10

	// recvTimeout bounds each read from the netlink socket. The kernel
	// answers a dump synchronously, so it only ever fires if something is
	// badly wrong; it keeps TCP from blocking forever.
	recvTimeout = 5 * time.Second
)

var recvBufs = sync.Pool{New: func() any { b := make([]byte, recvBufSize); return &b }}

// TCP lists the TCP sockets, IPv4 and IPv6, whose local port is port and
// whose state is in states, as the kernel sees them at the time of the call.
// It sees only the caller's network namespace; no privileges are needed.
//
// The result is not an atomic snapshot, and its order is unspecified.
// Sockets may change state, appear or go away while the kernel walks its
// tables. When more sockets match than fit in one reply datagram (about
// eighty per address family), the kernel resumes its walk by position, so a
// socket that exists throughout can be missed or listed twice if another
// socket in the same hash bucket comes or goes in between. A caller that acts
// on the absence of a socket should see it absent in two consecutive calls.
//
// # Cost
//
// Each call opens a NETLINK_SOCK_DIAG socket, makes one request and reply
// round trip for AF_INET and one for AF_INET6, and closes the socket: nine
// system calls while fewer than ~80 sockets match (a socket with its
// tcp_info takes about 400 bytes of a reply datagram). Replies are read into
// one pooled 32 KiB buffer; the other allocations are the result and a few
// small ones per call. The kernel skips sockets of other ports before
// formatting them, but each dump visits every bucket of the listening hash
// table when states has [Listen], and every bucket of the established hash
// table (sized at boot from memory: "TCP established hash table entries" in
// dmesg) when states has any other state. That walk, done twice, dominates:
// with 2^18 buckets (a 24 GiB host) a call took about 0.3 ms, 0.02 ms when
// states was only Listen. TCP is safe for concurrent use.
func TCP(port uint16, states StateSet) ([]Conn, error) {
	return list(unix.IPPROTO_TCP, port, states)
}

// UDP lists the UDP sockets, IPv4 and IPv6, bound to local port port, as
// the kernel sees them at the time of the call: unconnected ones (State
// Close) and connected ones (Established). The caveats of [TCP] about
// snapshots apply. Each call walks the kernel's UDP hash table (sized at
// boot like TCP's) once per address family. It needs the kernel's udp_diag
// (CONFIG_INET_UDP_DIAG), and returns an error wrapping [ErrNotSupported]
// without it.
func UDP(port uint16) ([]Conn, error) {
	return list(unix.IPPROTO_UDP, port, States(Close, Established))
}

// list runs one dump per address family for proto.
func list(proto uint8, port uint16, states StateSet) ([]Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPROTONOSUPPORT) {
			// RestrictAddressFamilies= without AF_NETLINK, or a sandbox
			// such as gVisor.
			return nil, fmt.Errorf("%w: open netlink socket: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("sockdiag: open netlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("sockdiag: set netlink receive timeout: %w", err)
	}

	bp := recvBufs.Get().(*[]byte)
	defer recvBufs.Put(bp)
	var (
		req   [nlmsgHdrLen + reqV2Len]byte
		conns []Conn
	)
	for seq, family := range [...]uint8{unix.AF_INET, unix.AF_INET6} {
		msg := appendDumpRequest(req[:0], uint32(seq+1), family, proto, port, states)
		conns, err = dump(fd, msg, *bp, uint32(seq+1), port, states, conns)
		if errors.Is(err, unix.ENOENT) {
			// sock_diag has no handler: a kernel without inet_diag, or
			// without tcp_diag or udp_diag.
			return nil, fmt.Errorf("%w: dump %s sockets: %w", ErrNotSupported, familyName(proto, family), err)
		}
		if err != nil {
			return nil, fmt.Errorf("sockdiag: dump %s sockets on port %d: %w", familyName(proto, family), port, err)
		}
	}
	return conns, nil
}

// dump sends one dump request and appends the sockets of the reply to conns.
func dump(fd int, req, buf []byte, seq uint32, port uint16, states StateSet, conns []Conn) ([]Conn, error) {
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	err := ignoringEINTR(func() error { return unix.Sendto(fd, req, 0, kernel) })
	if err != nil {
		return conns, fmt.Errorf("send request: %w", err)
	}
	for {
		var (
			n, flags int
			from     unix.Sockaddr
		)
		err := ignoringEINTR(func() (err error) {
			n, _, flags, from, err = unix.Recvmsg(fd, buf, nil, 0)
			return err
		})
		switch {
		case errors.Is(err, unix.EAGAIN):
			return conns, fmt.Errorf("receive reply: no answer within %v: %w", recvTimeout, err)
		case err != nil:
			return conns, fmt.Errorf("receive reply: %w", err)
		case flags&unix.MSG_TRUNC != 0:
			return conns, fmt.Errorf("receive reply: datagram larger than %d bytes", len(buf))
		case n == 0:
			return conns, errors.New("receive reply: empty datagram")
		}
		// Any process may send to our port ID; trust only the kernel's
		// (port ID 0) answers.
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		var done bool
		conns, done, err = parseDump(buf[:n], seq, port, states, conns)
		if err != nil || done {
			return conns, err
		}
	}
}

// ListenQueue returns the number of connections waiting in the accept queue
// of the listening TCP socket rc (sk_ack_backlog, which getsockopt(TCP_INFO)
// reports as tcpi_unacked for a listener). Pass the result of
// SyscallConn on a *net.TCPListener or *os.File; unlike (*os.File).Fd, this
// leaves the descriptor's O_NONBLOCK flag alone. Sockets in one SO_REUSEPORT
// group have separate queues. It returns an error wrapping [ErrNotListening]
// for a TCP socket in any other state.
func ListenQueue(rc syscall.RawConn) (int, error) {
	var (
		info *unix.TCPInfo
		serr error
	)
	err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("sockdiag: listen queue: getsockopt TCP_INFO: %w", err)
	}
	if s := State(info.State); s != Listen {
		return 0, fmt.Errorf("%w (state %v)", ErrNotListening, s)
	}
	return int(info.Unacked), nil
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

func familyName(proto, family uint8) string {
	name := "tcp"
	if proto == unix.IPPROTO_UDP {
		name = "udp"
	}
	if family == unix.AF_INET6 {
		return name + "6"
	}
	return name + "4"
}
