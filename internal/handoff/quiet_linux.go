package handoff

import (
	"context"
	"errors"
	"net/netip"

	"github.com/hotcluster/hotcluster/internal/sockdiag"
)

type connKey struct{ local, remote netip.AddrPort }

// quiesceTCP waits until the old listening sockets of a steered group (a
// generation's, one per slot) have nothing their workers must still
// serve. Conditions 1 and 3 are over the port, so they are checked once
// for all the sockets, not once per socket. The selector already points
// elsewhere, so the conditions only ever get closer to true:
//
//  1. handshakes on the port that were in progress at the switch are done
//     (they may complete into the old socket's queue);
//  2. the old sockets' accept queues are empty;
//  3. every connection a worker had accepted by then has had bytes read
//     from it by its worker (tcpi_bytes_received above the receive
//     queue's length). A plain
//     http.Server.Shutdown closes unanswered a connection whose request it
//     reads after shutdown began (golang/go#75591); this is what protects
//     it.
//
// Without socket diagnostics (a kernel or sandbox that refuses them) only
// condition 2 is checked.
func quiesceTCP(ctx context.Context, socks []*sock, addr netip.AddrPort) error {
	port := addr.Port()
	ours := func(c sockdiag.Conn) bool {
		return addr.Addr().IsUnspecified() || c.Local.Addr().Unmap() == addr.Addr().Unmap()
	}
	diag := true
	conns, err := sockdiag.TCP(port, sockdiag.States(sockdiag.SynRecv))
	if errors.Is(err, sockdiag.ErrNotSupported) {
		diag = false
	} else if err != nil {
		return err
	}
	if diag {
		pending := make(map[connKey]bool)
		for _, c := range conns {
			if ours(c) {
				pending[connKey{c.Local, c.Remote}] = true
			}
		}
		if len(pending) > 0 {
			err := pollUntil(ctx, "handshakes in progress", twice(func() (bool, error) {
				conns, err := sockdiag.TCP(port, sockdiag.States(sockdiag.SynRecv))
				if err != nil {
					return false, err
				}
				for _, c := range conns {
					if pending[connKey{c.Local, c.Remote}] {
						return false, nil
					}
				}
				return true, nil
			}))
			if err != nil {
				return err
			}
		}
	}
	err = pollUntil(ctx, "accept queue", func() (bool, error) {
		for _, so := range socks {
			if n, err := sockdiag.ListenQueue(so.rc); n != 0 || err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil || !diag {
		return err
	}
	// A connection is served once its worker has read from it: then
	// http.Server counts it active and a Shutdown waits for its answer.
	// Later requests on a keep-alive connection are the worker's own drain
	// to handle (see package child).
	unread := func(c sockdiag.Conn) bool {
		return c.Inode != 0 && c.BytesReceived <= uint64(c.RxQueue)
	}
	conns, err = sockdiag.TCP(port, sockdiag.States(sockdiag.Established))
	if err != nil {
		return err
	}
	waiting := make(map[connKey]int) // polls in a row the connection was not seen
	for _, c := range conns {
		if ours(c) && unread(c) {
			waiting[connKey{c.Local, c.Remote}] = 0
		}
	}
	return pollUntil(ctx, "requests not yet read", func() (bool, error) {
		if len(waiting) == 0 {
			return true, nil
		}
		conns, err := sockdiag.TCP(port, sockdiag.States(sockdiag.Established))
		if err != nil {
			return false, err
		}
		seen := make(map[connKey]bool, len(waiting))
		for _, c := range conns {
			k := connKey{c.Local, c.Remote}
			if _, ok := waiting[k]; !ok {
				continue
			}
			seen[k] = true
			if unread(c) {
				waiting[k] = 0
			} else {
				delete(waiting, k) // read once is enough: it never goes back
			}
		}
		// A dump of many sockets is not a snapshot (see package sockdiag):
		// a connection counts as closed only when two dumps missed it.
		for k, missed := range waiting {
			if !seen[k] {
				if missed >= 1 {
					delete(waiting, k)
				} else {
					waiting[k] = missed + 1
				}
			}
		}
		return len(waiting) == 0, nil
	})
}

// twice makes a condition hold only when it held on two polls in a row: a
// dump of many sockets is not a snapshot, and may miss one that exists
// throughout (see package sockdiag).
func twice(cond func() (bool, error)) func() (bool, error) {
	n := 0
	return func() (bool, error) {
		ok, err := cond()
		if err != nil || !ok {
			n = 0
			return false, err
		}
		n++
		return n >= 2, nil
	}
}
