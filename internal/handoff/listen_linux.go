package handoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/reuseport"
	"golang.org/x/sys/unix"
)

func openListener(spec Spec, cfg *Config) (*listener, error) {
	if spec.Network == "unix" && spec.Addr[0] != '@' {
		return openUnixListener(spec)
	}
	l := &listener{spec: spec, mode: Steered}
	switch {
	case spec.Network == "unix":
		l.mode, l.why = Shared, "unix socket"
	case cfg.Shared:
		l.mode, l.why = Shared, "--handoff shared"
	}
	if spec.Network != "unix" {
		// Before binding, for a message that names who holds the address
		// (bind would only say EADDRINUSE, or with SO_REUSEPORT on both
		// sides succeed and share the traffic with it).
		if err := checkFree(spec, spec.Network, spec.Addr, nil); err != nil {
			return nil, err
		}
	}
	so, addr, err := bindSock(spec.Network, spec.Addr, l.mode == Steered, !cfg.Nagle)
	if err != nil {
		return nil, listenError(spec, err)
	}
	l.socks, l.addr = []*sock{so}, addr
	if l.mode == Steered {
		if err := l.startSteering(cfg); err != nil {
			l.mode, l.why = Shared, fmt.Sprintf("kernel refused the BPF selector: %v", err)
		}
	}
	if spec.Network != "unix" {
		// Once more with the whole group bound: something may have joined
		// or bound beside it meanwhile.
		if err := checkFree(spec, spec.Network, l.addr, l.socks); err != nil {
			l.closeSocks()
			return nil, err
		}
	}
	return l, nil
}

func (l *listener) closeSocks() {
	if l.sel != nil {
		l.sel.close()
	}
	for _, so := range l.all() {
		so.c.Close()
	}
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

// bindSock binds one socket; reuseport makes it joinable by a group,
// nodelay sets TCP_NODELAY on a TCP socket (see Config.Nagle).
func bindSock(network, addr string, reuseport, nodelay bool) (*sock, string, error) {
	lc := net.ListenConfig{}
	// MPTCP sockets refuse SO_ATTACH_REUSEPORT_CBPF; see the package comment.
	lc.SetMultipathTCP(false)
	stream := network != "unix" && !strings.HasPrefix(network, "udp")
	lc.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			if reuseport {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			if serr == nil && stream && nodelay {
				// Set on the listener before listen(2): each accepted
				// socket is a copy of it and starts with TCP_NODELAY.
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			}
		}); err != nil {
			return err
		}
		return serr
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
	return newSock(nfd), nil
}

// newSock wraps a bare descriptor the master owns from now on.
func newSock(fd int) *sock {
	so := &sock{rc: rawFD(fd), c: rawFD(fd)}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		so.ino = st.Ino
	}
	so.cookie, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	return so
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

// grow adds a socket to the group, with socket 0's TCP_NODELAY (which is
// systemd's choice for an adopted group), and tells the selector.
func (l *listener) grow() error {
	k := len(l.socks)
	so, err := l.bindMore()
	if err != nil {
		return listenError(l.spec, fmt.Errorf("add socket %d to the group: %w", k, err))
	}
	l.socks = append(l.socks, so)
	if l.sel != nil {
		if err := l.sel.add(k, so); err != nil {
			return fmt.Errorf("listen %s: add socket %d to the selector: %w", l.spec, k, err)
		}
	}
	return nil
}

// steer points the group's selector at socket k; with per-slot sockets
// at the sockets of k's slots (slot 0 alone if none is given).
func (l *listener) steer(k int, slots []int) error {
	if !l.perSlot() || len(slots) == 0 {
		slots = []int{0}
	}
	return l.sel.steer(k, slots)
}

// sockAt returns the socket of slot for generation index k: slot 0 is
// l.socks[k], and without per-slot sockets every slot has that one. It
// creates the slot's socket, and those of the slots before it, when
// missing: a group never has a hole, and these sockets never leave it
// while the master lives (the kernel would move its last socket into the
// hole, under another socket's key for classic BPF).
func (l *listener) sockAt(k, slot int) (*sock, error) {
	if slot == 0 || !l.perSlot() {
		return l.socks[k], nil
	}
	if slot >= reuseport.MaxSlots {
		return nil, fmt.Errorf("listen %s: slot %d: at most %d sockets per generation", l.spec, slot, reuseport.MaxSlots)
	}
	for i := 1; i <= slot; i++ {
		if l.extra[[2]int{k, i}] != nil {
			continue
		}
		so, err := l.bindMore()
		if err != nil {
			return nil, listenError(l.spec, fmt.Errorf("add the socket of slot %d to the group: %w", i, err))
		}
		if err := l.sel.add(reuseport.SlotKey(k, i), so); err != nil {
			so.c.Close()
			return nil, fmt.Errorf("listen %s: add the socket of slot %d to the selector: %w", l.spec, i, err)
		}
		if l.extra == nil {
			l.extra = make(map[[2]int]*sock)
		}
		l.extra[[2]int{k, i}] = so
	}
	return l.extra[[2]int{k, slot}], nil
}

// slotsOf is the number of slot sockets index k has.
func (l *listener) slotsOf(k int) int {
	n := 1
	for l.extra[[2]int{k, n}] != nil {
		n++
	}
	return n
}

// perSlot reports whether the listener gives each worker slot a socket of
// its own: an eBPF selector with a slot table picks among them.
func (l *listener) perSlot() bool {
	return l.mode == Steered && l.sel != nil && l.sel.slotted()
}

// bindMore binds one more socket of the group, with socket 0's
// TCP_NODELAY (which is systemd's choice for an adopted group).
func (l *listener) bindMore() (*sock, error) {
	network := l.network
	if network == "" {
		network = l.spec.Network
	}
	var nodelay int
	l.socks[0].rc.Control(func(fd uintptr) {
		nodelay, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY)
	})
	so, _, err := bindSock(network, l.addr, true, nodelay != 0)
	return so, err
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

// quiesce waits until socks, sockets the selector no longer points to (a
// generation's, one per slot), have nothing left that their workers must
// serve.
func (l *listener) quiesce(ctx context.Context, socks []*sock) error {
	if !l.spec.Stream() {
		return pollUntil(ctx, "receive queue", func() (bool, error) {
			for _, so := range socks {
				var n int
				var ierr error
				if err := so.rc.Control(func(fd uintptr) {
					n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
				}); err != nil || ierr != nil || n != 0 {
					return false, errors.Join(err, ierr)
				}
			}
			return true, nil
		})
	}
	ap, err := netip.ParseAddrPort(l.addr)
	if err != nil {
		return err
	}
	return quiesceTCP(ctx, socks, ap)
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
