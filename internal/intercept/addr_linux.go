package intercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// sockAddr is an address a worker binds, or one of the master's sockets
// is bound to.
type sockAddr struct {
	family int // unix.AF_INET, AF_INET6 or AF_UNIX
	ip     netip.Addr
	port   uint16
	// path is a unix socket's path; an abstract name starts with '@'. ""
	// for an unnamed bind (the kernel picks an abstract name).
	path string
}

func (a sockAddr) String() string {
	if a.family == unix.AF_UNIX {
		if a.path == "" {
			return "an unnamed unix socket"
		}
		return a.path
	}
	return netip.AddrPortFrom(a.ip, a.port).String()
}

// wildcard: bound to every address of its family (0.0.0.0 or ::).
func (a sockAddr) wildcard() bool { return a.family != unix.AF_UNIX && a.ip.IsUnspecified() }

// maxSockaddr is sizeof(struct sockaddr_storage): the kernel refuses a
// longer address with EINVAL, as it would anyway.
const maxSockaddr = 128

// parseSockaddr reads a struct sockaddr as the worker passed it to bind.
// Families other than IPv4, IPv6 and unix are an error (they continue
// untouched).
func parseSockaddr(b []byte) (sockAddr, error) {
	if len(b) < 2 {
		return sockAddr{}, errors.New("address too short")
	}
	family := int(binary.NativeEndian.Uint16(b))
	switch family {
	case unix.AF_INET:
		if len(b) < unix.SizeofSockaddrInet4 {
			return sockAddr{}, errors.New("IPv4 address too short")
		}
		return sockAddr{family: family, port: binary.BigEndian.Uint16(b[2:]), ip: netip.AddrFrom4([4]byte(b[4:8]))}, nil
	case unix.AF_INET6:
		if len(b) < unix.SizeofSockaddrInet6 {
			return sockAddr{}, errors.New("IPv6 address too short")
		}
		ip := netip.AddrFrom16([16]byte(b[8:24]))
		if scope := binary.NativeEndian.Uint32(b[24:]); scope != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(scope), 10))
		}
		return sockAddr{family: family, port: binary.BigEndian.Uint16(b[2:]), ip: ip}, nil
	case unix.AF_UNIX:
		p := b[2:]
		if len(p) == 0 {
			return sockAddr{family: family}, nil
		}
		if p[0] == 0 {
			// Abstract: every byte counts, NULs included.
			return sockAddr{family: family, path: "@" + string(p[1:])}, nil
		}
		for i, c := range p {
			if c == 0 {
				p = p[:i]
				break
			}
		}
		return sockAddr{family: family, path: string(p)}, nil
	}
	return sockAddr{}, fmt.Errorf("address family %d", family)
}

// fromSockaddr converts what getsockname returns for one of the master's
// sockets.
func fromSockaddr(sa unix.Sockaddr) (sockAddr, error) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sockAddr{family: unix.AF_INET, ip: netip.AddrFrom4(sa.Addr), port: uint16(sa.Port)}, nil
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.ZoneId), 10))
		}
		return sockAddr{family: unix.AF_INET6, ip: ip, port: uint16(sa.Port)}, nil
	case *unix.SockaddrUnix:
		// Go reports an abstract name with a leading '@'.
		return sockAddr{family: unix.AF_UNIX, path: sa.Name}, nil
	}
	return sockAddr{}, fmt.Errorf("socket address %T", sa)
}

// target is one of the master's sockets that a worker may be given.
type target struct {
	name   string
	fd     int // a bare duplicate, never in the netpoller
	ino    uint64
	typ    int // unix.SOCK_STREAM or SOCK_DGRAM
	addr   sockAddr
	v6only bool
}

// Match ranks: the higher, the better the worker's address fits the
// target. 0: it does not.
const (
	noMatch = iota
	otherFamily
	sameFamily
	exact
)

// fit says how well asked, a bind of a socket of type typ, fits t: the
// socket types agree, and
//
//   - unix: the same path (or abstract name);
//   - IP: the same port, not 0, and a host t covers or that asks for no
//     host in particular: asked is a wildcard (0.0.0.0, ::), t is one (a
//     dual-stack :: also covers IPv4), both are the same address (an
//     IPv4-mapped IPv6 one counts as its IPv4 address), or asked is
//     "localhost" (127.0.0.1 or ::1, whichever it resolved to) and t is
//     localhost too or a wildcard.
//
// An exact address beats the same family, which beats another family: a
// program that binds 0.0.0.0 gets an IPv4 socket when --listen has one.
func fit(asked sockAddr, typ int, t *target) int {
	if typ != t.typ {
		return noMatch
	}
	if asked.family == unix.AF_UNIX || t.addr.family == unix.AF_UNIX {
		if asked.family != t.addr.family || asked.path == "" || asked.path != t.addr.path {
			return noMatch
		}
		return exact
	}
	if asked.port == 0 || asked.port != t.addr.port {
		return noMatch
	}
	a, b := asked.ip.Unmap().WithZone(""), t.addr.ip.Unmap().WithZone("")
	switch {
	case a == b:
		return exact
	case asked.wildcard(),
		t.addr.wildcard() && (b.Is4() == a.Is4() || b.Is6() && !t.v6only),
		localhost(a) && (localhost(b) || t.addr.wildcard()):
	default:
		return noMatch
	}
	if asked.family == t.addr.family {
		return sameFamily
	}
	return otherFamily
}

// match returns the index of the target that fits asked best, or -1.
func match(asked sockAddr, typ int, targets []*target) int {
	best, rank := -1, noMatch
	for i, t := range targets {
		if r := fit(asked, typ, t); r > rank {
			best, rank = i, r
		}
	}
	return best
}

// resolvePath makes a unix socket path absolute against the worker's
// working directory, and clean ("/run/./app.sock" is "/run/app.sock"), as
// strings only: the master looks up nothing a worker names. A path through
// a symbolic link does not match; its bind continues.
func resolvePath(path, cwd string) string {
	if path == "" || path[0] == '@' {
		return path
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(cwd, path)
	}
	return filepath.Clean(path)
}

var (
	localhost4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	localhost6 = netip.IPv6Loopback()
)

// localhost: what "localhost" resolves to.
func localhost(ip netip.Addr) bool { return ip == localhost4 || ip == localhost6 }
