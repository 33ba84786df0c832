package handoff

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// inherited is a socket handed in by the service manager.
type inherited struct {
	spec Spec // its name, network and bound address
	fd   int  // a close-on-exec duplicate, owned until adopted
	used bool
}

// describeInherited reads what each handed-in socket is.
func describeInherited(files []*os.File) ([]*inherited, error) {
	var out []*inherited
	for _, f := range files {
		so, err := sockOf(f, f)
		if err != nil {
			return nil, fmt.Errorf("socket %s from the service manager: %w", f.Name(), err)
		}
		fd := int(so.c.(rawFD))
		spec, err := socketSpec(fd, f.Name())
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("socket %s from the service manager: %w", f.Name(), err)
		}
		out = append(out, &inherited{spec: spec, fd: fd})
	}
	return out, nil
}

// socketSpec describes a bound socket as a --listen value would.
func socketSpec(fd int, name string) (Spec, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return Spec{}, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return Spec{}, err
	}
	spec := Spec{Name: name}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		spec.Network = "tcp4"
		spec.Addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		spec.Network = "tcp"
		spec.Addr = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrUnix:
		if typ != unix.SOCK_STREAM {
			return Spec{}, fmt.Errorf("unix socket of type %d: only stream sockets are supported", typ)
		}
		spec.Network, spec.Addr = "unix", sa.Name
		return spec, nil
	default:
		return Spec{}, fmt.Errorf("unsupported socket address %T", sa)
	}
	switch typ {
	case unix.SOCK_STREAM:
	case unix.SOCK_DGRAM:
		spec.Network = "udp" + spec.Network[3:]
	default:
		return Spec{}, fmt.Errorf("socket of type %d: want a stream or datagram socket", typ)
	}
	return spec, nil
}

// matchInherited finds the handed-in socket for spec: by name, else by
// network kind and address.
func matchInherited(in []*inherited, spec Spec) *inherited {
	for _, i := range in {
		if !i.used && i.spec.Name == spec.Name && i.spec.Stream() == spec.Stream() {
			i.used = true
			return i
		}
	}
	for _, i := range in {
		if !i.used && sameAddress(i.spec, spec) {
			i.used = true
			return i
		}
	}
	return nil
}

func sameAddress(got, want Spec) bool {
	if (got.Network == "unix") != (want.Network == "unix") || got.Stream() != want.Stream() {
		return false
	}
	if got.Network == "unix" {
		return got.Addr == want.Addr
	}
	g, err := netip.ParseAddrPort(got.Addr)
	if err != nil {
		return false
	}
	host, port, err := net.SplitHostPort(want.Addr)
	if err != nil {
		return false
	}
	if p, err := strconv.Atoi(port); err != nil || p != int(g.Port()) {
		return false
	}
	if host == "" {
		return g.Addr().IsUnspecified()
	}
	w, err := netip.ParseAddr(host)
	return err == nil && w.Unmap() == g.Addr().Unmap()
}

// adoptListener serves a handed-in socket. It is made non-blocking once,
// here, as the worker contract says (systemd's NonBlocking=yes does the
// same); it can be steered when systemd set ReusePort=yes on it. Its other
// options (TCP_NODELAY among them) stay as systemd set them.
func adoptListener(spec Spec, in *inherited, cfg *Config) (*listener, error) {
	fd := in.fd
	in.fd = -1
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: socket from the service manager: %w", spec, err)
	}
	l := &listener{spec: spec, adopted: true, mode: Steered, addr: in.spec.Addr, socks: []*sock{newSock(fd)}}
	inet := spec.Network != "unix" && in.spec.Network != "unix"
	if inet {
		// Only systemd's socket itself may listen there: anything else
		// would share (or steal) its traffic.
		if err := checkFree(spec, in.spec.Network, l.addr, l.socks); err != nil {
			l.closeSocks()
			return nil, err
		}
	}
	reuse, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT)
	switch {
	case !inet:
		l.mode, l.why = Shared, "unix socket from systemd"
	case cfg.Shared:
		l.mode, l.why = Shared, "--handoff shared"
	case reuse == 0:
		l.mode, l.why = Shared, "socket from systemd without ReusePort=yes"
	default:
		// New sockets of the group bind the same address, in the same family.
		l.network = in.spec.Network
		if err := l.startSteering(cfg); err != nil {
			l.mode, l.why = Shared, fmt.Sprintf("cannot steer systemd's socket: %v", err)
		}
	}
	if l.mode == Steered {
		if err := checkFree(spec, in.spec.Network, l.addr, l.socks); err != nil {
			l.closeSocks()
			return nil, err
		}
	}
	return l, nil
}

func getReusePort(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT)
}
