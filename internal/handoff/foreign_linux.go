package handoff

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/internal/sockdiag"
	"github.com/hotcluster/hotcluster/internal/sockowner"
	"golang.org/x/sys/unix"
)

// checkFree returns an *InUseError when sockets other than ours listen on
// an address overlapping addr (network as in Spec). Without socket
// diagnostics, or for a host name, there is nothing it can tell.
func checkFree(spec Spec, network, addr string, ours []*sock) error {
	found, err := listForeign(spec, network, addr, ours)
	if err != nil || len(found) == 0 {
		return nil
	}
	findOwners(found)
	return &InUseError{Listener: spec, Sockets: found}
}

// listForeign lists the sockets on addr's port, other than ours, whose
// address overlaps addr: listening ones for TCP, bound ones for UDP. Port
// 0 (not bound yet) has none. Owners are not looked up.
func listForeign(spec Spec, network, addr string, ours []*sock) ([]*Foreign, error) {
	me, port, err := boundOf(network, addr, ours)
	if err != nil || port == 0 {
		return nil, err
	}
	var conns []sockdiag.Conn
	if spec.Stream() {
		conns, err = sockdiag.TCP(port, sockdiag.States(sockdiag.Listen))
	} else {
		conns, err = sockdiag.UDP(port)
	}
	if err != nil {
		return nil, err
	}
	mine := make(map[uint64]bool, len(ours))
	for _, so := range ours {
		mine[so.ino] = true
	}
	var out []*Foreign
	seen := make(map[uint64]bool)
	now := time.Now()
	for _, c := range conns {
		ino := uint64(c.Inode)
		if ino == 0 || mine[ino] || seen[ino] {
			continue
		}
		theirs := bound{addr: c.Local.Addr(), v6only: c.V6Only}
		if !overlaps(me, theirs) {
			continue
		}
		seen[ino] = true
		out = append(out, &Foreign{
			Listener: spec.Name, Addr: c.Local.String(), Inode: ino,
			Joined: sameGroup(me, theirs), TakesConnections: mayTake(me, theirs), Since: now,
		})
	}
	return out, nil
}

var errHostName = errors.New("handoff: not an IP address")

// boundOf says what address a listener's sockets are (or, before binding,
// will be) bound to: socket 0's own, when there is one.
func boundOf(network, addr string, ours []*sock) (bound, uint16, error) {
	if len(ours) > 0 {
		var (
			sa  unix.Sockaddr
			err error
			v6  int
		)
		ours[0].rc.Control(func(fd uintptr) {
			if sa, err = unix.Getsockname(int(fd)); err == nil {
				if _, ok := sa.(*unix.SockaddrInet6); ok {
					v6, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
				}
			}
		})
		if err != nil {
			return bound{}, 0, err
		}
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			return bound{addr: netip.AddrFrom4(sa.Addr)}, uint16(sa.Port), nil
		case *unix.SockaddrInet6:
			return bound{addr: netip.AddrFrom16(sa.Addr), v6only: v6 != 0}, uint16(sa.Port), nil
		}
		return bound{}, 0, errHostName
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return bound{}, 0, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return bound{}, 0, err
	}
	v4 := strings.HasSuffix(network, "4")
	v6only := strings.HasSuffix(network, "6") // Go sets IPV6_V6ONLY for tcp6, udp6
	if host == "" {
		// Go binds [::], dual-stack unless the network is tcp6 or udp6.
		if v4 {
			return bound{addr: netip.IPv4Unspecified()}, uint16(port), nil
		}
		return bound{addr: netip.IPv6Unspecified(), v6only: v6only}, uint16(port), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return bound{}, 0, errHostName // known once bound
	}
	if ip.Is4In6() && !v6only {
		ip = ip.Unmap() // Go binds an IPv4 socket for ::ffff:a.b.c.d
	}
	return bound{addr: ip, v6only: ip.Is6() && (v6only || !ip.IsUnspecified())}, uint16(port), nil
}

// findOwners fills in the owners of each socket, in one scan of /proc.
func findOwners(fs []*Foreign) {
	if len(fs) == 0 {
		return
	}
	inodes := make([]uint64, len(fs))
	for i, f := range fs {
		inodes[i] = f.Inode
	}
	owners := sockowner.Find(inodes...)
	for _, f := range fs {
		for _, p := range owners[f.Inode] {
			f.Owners = append(f.Owners, Owner{PID: p.PID, Command: p.Command})
		}
	}
}
