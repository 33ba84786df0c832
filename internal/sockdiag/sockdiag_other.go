//go:build !linux

package sockdiag

import "syscall"

// TCP lists the TCP sockets on port whose state is in states. It needs
// Linux's NETLINK_SOCK_DIAG and returns [ErrNotSupported] elsewhere.
func TCP(port uint16, states StateSet) ([]Conn, error) {
	return nil, ErrNotSupported
}

// UDP lists the UDP sockets bound to port. It needs Linux's
// NETLINK_SOCK_DIAG and returns [ErrNotSupported] elsewhere.
func UDP(port uint16) ([]Conn, error) {
	return nil, ErrNotSupported
}

// ListenQueue returns the accept-queue length of a listening TCP socket. It
// needs Linux's TCP_INFO and returns [ErrNotSupported] elsewhere.
func ListenQueue(rc syscall.RawConn) (int, error) {
	return 0, ErrNotSupported
}
