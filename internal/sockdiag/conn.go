package sockdiag

import (
	"errors"
	"net/netip"
	"strconv"
)

// ErrNotSupported is returned by [TCP], [UDP] and [ListenQueue] on
// platforms other than Linux, and wrapped by [TCP] and [UDP] when a sandbox
// refuses netlink sockets or the kernel lacks TCP or UDP socket diagnostics
// (CONFIG_INET_TCP_DIAG, CONFIG_INET_UDP_DIAG).
var ErrNotSupported = errors.New("sockdiag: socket diagnostics not supported")

// ErrNotListening is returned by [ListenQueue] for a socket that is not a
// listening TCP socket.
var ErrNotListening = errors.New("sockdiag: socket is not listening")

// Conn is one TCP or UDP socket as the kernel reports it.
type Conn struct {
	// Local and Remote are the socket's addresses. A socket of an IPv6
	// dual-stack listener that talks to an IPv4 peer has IPv4-mapped IPv6
	// addresses (::ffff:a.b.c.d); use [netip.Addr.Unmap] to compare them with
	// IPv4 addresses. Remote is the unspecified address with port 0 for a
	// listening socket.
	Local, Remote netip.AddrPort

	// State is the TCP state. Connections whose handshake is still in
	// progress on a listener are reported as SynRecv. A UDP socket is Close
	// while unconnected (bound only) and Established once connected.
	State State

	// V6Only is, for an IPv6 socket, its IPV6_V6ONLY option: false for a
	// dual-stack socket bound to [::], which also takes IPv4. It is always
	// false for an IPv4 socket.
	V6Only bool

	// RxQueue is, for a connected socket, the number of bytes received and
	// not yet read by the application; for a Listen socket it is the number
	// of connections in its accept queue; for a UDP socket, the bytes of
	// the datagrams waiting in its receive queue.
	RxQueue uint32

	// TxQueue is, for a connected socket, the number of bytes written and not
	// yet acknowledged by the peer; for a Listen socket it is the accept-queue
	// limit (the listen backlog).
	TxQueue uint32

	// BytesReceived is tcpi_bytes_received: the number of bytes the kernel
	// has received on the connection, read or not. It is 0 for sockets that
	// carry no tcp_info (SynRecv, TimeWait) and on kernels older than Linux
	// 4.1, whose tcp_info ends before the field.
	BytesReceived uint64

	// Inode is the inode number of the socket's file, or 0 when no file
	// refers to it: the connection waits in an accept queue, is not a full
	// socket (SynRecv, TimeWait), or was closed by its owner and is being
	// torn down.
	Inode uint32

	// Cookie is the kernel's socket cookie (SO_COOKIE), which identifies the
	// socket for its whole life and is never reused while the system runs.
	Cookie uint64
}

// State is a TCP state, numbered as in the kernel's include/net/tcp_states.h.
type State uint8

// TCP states. The names follow the kernel's, as printed by ss(8).
const (
	Established State = 1
	SynSent     State = 2
	SynRecv     State = 3
	FinWait1    State = 4
	FinWait2    State = 5
	TimeWait    State = 6
	Close       State = 7
	CloseWait   State = 8
	LastAck     State = 9
	Listen      State = 10
	Closing     State = 11
	// BoundInactive is a socket that is bound but neither listening nor
	// connecting (Linux 6.8 and later; older kernels never report it).
	BoundInactive State = 13
)

var stateNames = [...]string{
	Established:   "ESTABLISHED",
	SynSent:       "SYN_SENT",
	SynRecv:       "SYN_RECV",
	FinWait1:      "FIN_WAIT1",
	FinWait2:      "FIN_WAIT2",
	TimeWait:      "TIME_WAIT",
	Close:         "CLOSE",
	CloseWait:     "CLOSE_WAIT",
	LastAck:       "LAST_ACK",
	Listen:        "LISTEN",
	Closing:       "CLOSING",
	12:            "NEW_SYN_RECV",
	BoundInactive: "BOUND_INACTIVE",
}

// String returns the kernel's name of the state, such as "ESTABLISHED", or
// "State(n)" for a number it does not know.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// StateSet is a set of TCP states, laid out as the kernel's idiag_states
// bitmask: state s is in the set when bit s is set.
type StateSet uint32

// AllStates holds every TCP state.
const AllStates StateSet = 1<<16 - 2

// States returns the set holding exactly the given states.
func States(states ...State) StateSet {
	var set StateSet
	for _, s := range states {
		set |= s.bit()
	}
	return set
}

// Has reports whether s holds state.
func (s StateSet) Has(state State) bool {
	return state.bit() != 0 && s&state.bit() != 0
}

func (s State) bit() StateSet {
	if s >= 32 {
		return 0
	}
	return 1 << s
}
