package handoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func openListener(spec Spec, forceShared bool) (*listener, error) {
	if spec.Network == "unix" && spec.Addr[0] != '@' {
		return openUnixListener(spec)
	}
	l := &listener{spec: spec, mode: Steered}
	switch {
	case spec.Network == "unix":
		l.mode, l.why = Shared, "unix socket"
	case forceShared:
		l.mode, l.why = Shared, "--handoff shared"
	}
	so, addr, err := bindSock(spec.Network, spec.Addr, l.mode == Steered)
	if err != nil {
		return nil, listenError(spec, err)
	}
	l.socks, l.addr = []*sock{so}, addr
	if l.mode == Steered {
		// The program must be in place before a second socket joins the
		// group, or the kernel's hash would already spread connections.
		if err := l.steer(0); err != nil {
			l.mode, l.why = Shared, fmt.Sprintf("kernel refused the BPF selector: %v", err)
		}
	}
	return l, nil
}

func listenError(spec Spec, err error) error {
	var hint string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "; another process holds it (see `ss -ltnup`), or a stale hotcluster is still running"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		if spec.Network == "unix" {
			hint = "; is the directory writable by this user?"
		} else {
			hint = "; ports below 1024 need root or CAP_NET_BIND_SERVICE"
		}
	case errors.Is(err, syscall.ENOENT):
		hint = "; does the socket's directory exist?"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = "; that address is not on any interface of this machine"
	}
	return fmt.Errorf("listen %s: %w%s", spec, err, hint)
}

// bindSock binds one socket; reuseport makes it joinable by a group.
func bindSock(network, addr string, reuseport bool) (*sock, string, error) {
	lc := net.ListenConfig{}
	// MPTCP sockets refuse SO_ATTACH_REUSEPORT_CBPF; see the package comment.
	lc.SetMultipathTCP(false)
	if reuseport {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	ctx := context.Background()
	switch network {
	case "unix": // abstract: socket paths are bound by openUnixListener
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			return nil, "", err
		}
		so, err := sockOf(ln.(*net.UnixListener), ln)
		return so, addr, err
	case "udp", "udp4", "udp6":
		pc, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			return nil, "", err
		}
		so, err := sockOf(pc.(*net.UDPConn), pc)
		return so, pc.LocalAddr().String(), err
	default:
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			return nil, "", err
		}
		so, err := sockOf(ln.(*net.TCPListener), ln)
		return so, ln.Addr().String(), err
	}
}

// sockOf takes a bare duplicate of a socket net made, and closes net's
// copy, which removes it from the netpoller; the socket itself lives on in
// the duplicate (see sock).
func sockOf(sc syscall.Conn, c interface{ Close() error }) (*sock, error) {
	defer c.Close()
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd, err := dupFD(rc)
	if err != nil {
		return nil, err
	}
	return &sock{rc: rawFD(nfd), c: rawFD(nfd)}, nil
}

// dupFD makes a close-on-exec duplicate through rc, never through Fd.
func dupFD(rc syscall.RawConn) (int, error) {
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return 0, err
	}
	if derr != nil {
		return 0, fmt.Errorf("dup: %w", derr)
	}
	return nfd, nil
}

// rawFD is a descriptor outside the netpoller; only Control and Close work.
type rawFD int

func (fd rawFD) Control(f func(uintptr)) error  { f(uintptr(fd)); return nil }
func (fd rawFD) Read(func(uintptr) bool) error  { return errors.ErrUnsupported }
func (fd rawFD) Write(func(uintptr) bool) error { return errors.ErrUnsupported }
func (fd rawFD) Close() error                   { return unix.Close(int(fd)) }

// grow adds a socket to the group.
func (l *listener) grow() error {
	network := l.network
	if network == "" {
		network = l.spec.Network
	}
	so, _, err := bindSock(network, l.addr, true)
	if err != nil {
		return listenError(l.spec, fmt.Errorf("add socket %d to the group: %w", len(l.socks), err))
	}
	l.socks = append(l.socks, so)
	return nil
}

// steer points the group's selector at socket k. Any socket of the group
// replaces the group's program.
func (l *listener) steer(k int) error {
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(k)}}
	fprog := unix.SockFprog{Len: 1, Filter: &prog[0]}
	var serr error
	if err := l.socks[0].rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return err
	}
	return serr
}

// dupFile makes a close-on-exec duplicate of a socket without touching its
// O_NONBLOCK flag: os.NewFile over a descriptor that is already non-blocking
// leaves it alone, and so does exec.Cmd when it calls Fd on the result.
func dupFile(rc syscall.RawConn, name string) (*os.File, error) {
	nfd, err := dupFD(rc)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// Polls start fast, since on an idle machine the old socket is quiet
// within a millisecond or two, and slow down so that a long wait under load
// costs the master little CPU: each poll of the socket diagnostics walks
// the kernel's whole connection table.
const (
	pollMin = time.Millisecond
	pollMax = 20 * time.Millisecond
)

// quiesce waits until so, a socket the selector no longer points to, has
// nothing left that its generation's workers must serve.
func (l *listener) quiesce(ctx context.Context, so *sock) error {
	if !l.spec.Stream() {
		return pollUntil(ctx, "receive queue", func() (bool, error) {
			var n int
			var ierr error
			if err := so.rc.Control(func(fd uintptr) {
				n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			}); err != nil {
				return false, err
			}
			return n == 0, ierr
		})
	}
	ap, err := netip.ParseAddrPort(l.addr)
	if err != nil {
		return err
	}
	return quiesceTCP(ctx, so, ap)
}

// pollUntil calls done, at growing intervals, until it reports true, fails, or
// ctx ends; what names the condition in the error.
func pollUntil(ctx context.Context, what string, done func() (bool, error)) error {
	d := pollMin
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		ok, err := done()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-t.C:
		}
		d = min(2*d, pollMax)
		t.Reset(d)
	}
}
