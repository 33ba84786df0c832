package handoff

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// maxDiscard bounds the connections (or datagrams) one reset takes off a
// queue; a listen backlog holds at most somaxconn (4096 by default).
const maxDiscard = 1 << 16

// resetIdleLocked empties the queue of every steered socket that no
// generation holds and no selector points to: the connections left there
// would wait for good, since nobody will accept from it until a later
// generation takes the socket, if one ever does. TCP connections are reset,
// so that their clients fail at once instead of timing out; UDP datagrams
// are dropped. Nothing is done from Persist until Reclaim (see frozen).
//
// With Config.Stranded set, TCP connections are handed to it instead while
// a generation holds the active socket (see strandLocked), and only those
// it does not take are reset.
func (s *Sockets) resetIdleLocked() {
	if s.frozen || s.closed {
		return
	}
	held := make(map[int]bool)
	served := make(map[[2]int]bool) // {index, slot} a generation serves
	// known: indexes whose slots are known; a previous master's are not,
	// and all their sockets count as served.
	known := make(map[int]bool)
	for gen, k := range s.holders {
		held[k] = true
		for _, slot := range s.served[gen] {
			served[[2]int{k, slot}] = true
			known[k] = true
		}
	}
	serving := held[s.active]
	for _, l := range s.ls {
		if l.mode != Steered {
			continue
		}
		// A slot's socket is idle when its index is, or when its
		// generation leaves the slot out (Serve).
		idle := func(k, slot int) bool {
			if held[k] {
				return l.perSlot() && known[k] && !served[[2]int{k, slot}]
			}
			return k != s.active
		}
		for k, so := range l.socks {
			if idle(k, 0) {
				s.resetLocked(l, k, so, serving)
			}
		}
		for ks, so := range l.extra {
			if idle(ks[0], ks[1]) {
				s.resetLocked(l, ks[0], so, serving)
			}
		}
	}
}

// resetLocked empties the queue of so, an idle socket of index k of l (see
// resetIdleLocked); serving says a generation holds the active socket.
func (s *Sockets) resetLocked(l *listener, k int, so *sock, serving bool) {
	if s.cfg.Stranded != nil && serving && strings.HasPrefix(l.spec.Network, "tcp") {
		_, n, err := s.strandLocked(l, k, so)
		switch {
		case err != nil:
			s.cfg.Log("listen %s: take the queue of idle socket %d: %v (%d reset)", l.spec.Name, k, err, n)
		case n > 0:
			s.cfg.Log("listen %s: reset %d connections left in the accept queue of socket %d, which no generation serves any more", l.spec.Name, n, k)
		}
		return
	}
	n, err := discardQueue(so, l.spec.Stream())
	switch {
	case err != nil:
		s.cfg.Log("listen %s: empty the queue of idle socket %d: %v (%d taken off)", l.spec.Name, k, err, n)
	case n > 0 && l.spec.Stream():
		s.cfg.Log("listen %s: reset %d connections left in the accept queue of socket %d, which no generation serves any more", l.spec.Name, n, k)
	case n > 0:
		s.cfg.Log("listen %s: dropped %d datagrams left in the queue of socket %d, which no generation serves any more", l.spec.Name, n, k)
	}
}

// discardQueue takes what waits in so's queue off it: for TCP it accepts
// each connection on the master's own non-blocking descriptor and closes it
// with SO_LINGER {on, 0}, which sends a reset rather than a FIN (socket(7));
// for UDP it reads and drops each datagram. It returns how many it took.
func discardQueue(so *sock, stream bool) (int, error) {
	n := 0
	var err error
	so.rc.Control(func(fd uintptr) {
		var buf [1]byte
		for n < maxDiscard {
			if stream {
				// The socket is non-blocking (see the package comment), unless
				// a worker broke that for everyone: then accept would block
				// the caller on an empty queue. Ask first.
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				if k, perr := unix.Poll(pfd, 0); perr == nil && (k == 0 || pfd[0].Revents&unix.POLLIN == 0) {
					return
				}
				var nfd int
				nfd, _, err = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
				if err == nil {
					unix.SetsockoptLinger(nfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
					unix.Close(nfd)
				}
			} else {
				// A datagram longer than buf is dropped whole (MSG_TRUNC).
				_, _, err = unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT)
			}
			switch {
			case err == nil:
				n++
			case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
				// A signal, or a connection the client gave up on: go on.
			case errors.Is(err, unix.EAGAIN):
				err = nil
				return
			default:
				return
			}
		}
	})
	return n, err
}
