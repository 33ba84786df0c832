package handoff

import "net/netip"

// bound is the local address of an IP socket, as far as deciding which
// sockets compete for the same connections goes.
type bound struct {
	addr netip.Addr
	// v6only is IPV6_V6ONLY, for an IPv6 socket: a dual-stack socket on
	// [::] also takes IPv4.
	v6only bool
}

// addrSet is the set of destination addresses of one IP version that a
// bound socket accepts: none, all, or exactly one.
type addrSet struct {
	all  bool
	one  netip.Addr // valid when !all
	none bool
}

// accepts returns the IPv4 and IPv6 destinations b takes connections for.
func (b bound) accepts() (v4, v6 addrSet) {
	none := addrSet{none: true}
	a := b.addr
	switch {
	case a.Is4():
		if a.IsUnspecified() {
			return addrSet{all: true}, none
		}
		return addrSet{one: a}, none
	case a.Is4In6():
		// Bound to ::ffff:a.b.c.d: IPv4 traffic to a.b.c.d only.
		if a.Unmap().IsUnspecified() {
			return addrSet{all: true}, none
		}
		return addrSet{one: a.Unmap()}, none
	case a.IsUnspecified():
		if b.v6only {
			return none, addrSet{all: true}
		}
		return addrSet{all: true}, addrSet{all: true}
	default:
		return none, addrSet{one: a}
	}
}

func (s addrSet) meets(o addrSet) bool {
	switch {
	case s.none || o.none:
		return false
	case s.all || o.all:
		return true
	}
	return s.one == o.one
}

// overlaps reports whether some destination address is taken both by a
// socket bound to a and by one bound to b, on the same port: then they
// compete for its connections.
func overlaps(a, b bound) bool {
	a4, a6 := a.accepts()
	b4, b6 := b.accepts()
	return a4.meets(b4) || a6.meets(b6)
}

// sameGroup reports whether a socket bound to theirs sits in the
// SO_REUSEPORT group of one bound to ours: the kernel groups sockets of the
// same family, address and IPV6_V6ONLY (and user). The group's selector
// decides for all its members; a socket beside the group does not obey it.
func sameGroup(ours, theirs bound) bool {
	return ours.addr == theirs.addr && ours.addr.Is4() == theirs.addr.Is4() && (ours.addr.Is4() || ours.v6only == theirs.v6only)
}

// mayTake reports whether the kernel may give a socket bound to theirs,
// beside the group of ours, connections that ours would take. The listener
// lookup prefers an exact address over a wildcard, and for IPv4 traffic an
// IPv4 socket over an IPv6 one (compute_score in net/ipv4/inet_hashtables.c):
// a wildcard socket of theirs never wins against a specific address of ours
// or, on IPv4, against an IPv4 socket of ours. In every other overlapping
// case it may.
func mayTake(ours, theirs bound) bool {
	if !overlaps(ours, theirs) || sameGroup(ours, theirs) {
		return false
	}
	wild := theirs.addr.IsUnspecified() || theirs.addr.Is4In6() && theirs.addr.Unmap().IsUnspecified()
	if wild && (!ours.addr.IsUnspecified() || ours.addr.Is4() && !theirs.addr.Is4()) {
		return false
	}
	return true
}
