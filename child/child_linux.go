package child

import (
	"golang.org/x/sys/unix"
)

// closeOnExec sets FD_CLOEXEC, a flag of the descriptor itself: unlike
// O_NONBLOCK it is not shared with other holders of the socket.
func closeOnExec(fd int) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	return err
}

func closeFd(fd int) error { return unix.Close(fd) }

// sockKind asks the kernel what the descriptor is without changing it.
func sockKind(fd int) (kind, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err == unix.ENOTSOCK {
		return kindOther, nil
	}
	if err != nil {
		return kindOther, err
	}
	switch typ {
	case unix.SOCK_DGRAM:
		return kindPacket, nil
	case unix.SOCK_STREAM, unix.SOCK_SEQPACKET:
		acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil {
			return kindOther, err
		}
		if acc == 1 {
			return kindListener, nil
		}
	}
	return kindOther, nil
}
