package rescue

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// A blocking read takes whatever the receive queue holds, whatever the
// low-water mark (see freeze), so a thread-per-connection worker keeps
// reading requests up to its stop signal, and with 16 busy connections
// the moment when every one has its thread waiting may not come within
// QuiesceWait. If it has not come within QuiesceFree, each blocking
// connection quiesce looks at holds its client's new data back: a
// socket filter drops every segment that carries data (pure ACKs and FINs
// pass, so the worker's answers are acknowledged and a close is seen).
// The client's kernel keeps what it sent and sends it again (after its
// retransmission timeout, 200 ms or more); by then the worker is stopped
// or gone and the request waits unread for the master. The requests under
// way finish, so the threads come to rest within a request's time. A
// request held back this way costs its client one retransmission timeout,
// once; none is lost.
//
// The filter runs on the TCP segment (tcp_filter runs sk_filter with the
// packet's data at the TCP header, before the socket's queues), the same
// for IPv4 and IPv6: payload = length - 4 * data offset.
var holdBackFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 12}, // data offset, high nibble
	{Code: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 4},
	{Code: unix.BPF_ALU | unix.BPF_LSH | unix.BPF_K, K: 2},
	{Code: unix.BPF_MISC | unix.BPF_TAX},
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_X, Jt: 0, Jf: 1},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // no payload: keep
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // payload: drop
}

// holdBack attaches the filter to h's socket, unless the socket has a
// filter of its own (the worker's, which the master leaves alone), and
// reports whether it did.
func (h *heldConn) holdBack() bool {
	if hasFilter(h.fd) {
		return false
	}
	prog := unix.SockFprog{Len: uint16(len(holdBackFilter)), Filter: &holdBackFilter[0]}
	h.heldBack = unix.SetsockoptSockFprog(h.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog) == nil
	return h.heldBack
}

// letIn detaches the filter holdBack attached; what the client sends again
// from then on is queued.
func (h *heldConn) letIn() {
	if h.heldBack {
		unix.SetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
		h.heldBack = false
	}
}

// hasFilter reports whether fd's socket has a classic BPF filter:
// SO_GET_FILTER with no room answers with the filter's length, 0 for none.
func hasFilter(fd int) bool {
	var n uint32
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_GET_FILTER,
		0, uintptr(unsafe.Pointer(&n)), 0)
	return errno != 0 || n > 0
}
