package handoff

import (
	"errors"

	"golang.org/x/sys/unix"
)

// strandLocked takes the connections left in the accept queue of so, the
// idle socket k of TCP listener l, and hands them to Config.Stranded, which
// relays each to the generation that holds the active socket. It resets
// what Stranded does not take, and reports how many it handed and reset.
// It is used only while a generation holds the active socket: a relay's
// fresh connection would otherwise wait in a queue nobody serves too.
//
// Accepting changes nothing for the client: the kernel completed the
// handshake already, and nothing is read, so the relayed connection begins
// where the client's bytes begin, whatever the protocol.
func (s *Sockets) strandLocked(l *listener, k int, so *sock) (handed, reset int, err error) {
	fds, err := acceptQueue(so)
	if len(fds) > 0 {
		handed = s.cfg.Stranded(l.spec.Name, k, fds)
		for _, fd := range fds[handed:] {
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Close(fd)
		}
		reset = len(fds) - handed
	}
	return handed, reset, err
}

// acceptQueue accepts, on non-blocking close-on-exec descriptors of the
// master's own, what waits in so's accept queue, up to maxDiscard.
func acceptQueue(so *sock) ([]int, error) {
	var fds []int
	var err error
	so.rc.Control(func(fd uintptr) {
		for len(fds) < maxDiscard {
			// The socket is non-blocking (see the package comment), unless
			// a worker broke that for everyone: then accept would block
			// the caller on an empty queue. Ask first.
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, perr := unix.Poll(pfd, 0); perr == nil && (k == 0 || pfd[0].Revents&unix.POLLIN == 0) {
				return
			}
			var nfd int
			nfd, _, err = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			switch {
			case err == nil:
				fds = append(fds, nfd)
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
	return fds, err
}
