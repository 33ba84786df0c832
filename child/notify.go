package child

import (
	"errors"
	"fmt"
	"net"

	"github.com/hotcluster/hotcluster/child/internal/protocol"
)

// Notify sends state, one or more newline-separated "KEY=VALUE" assignments
// of systemd's notify protocol such as "STATUS=warming cache", as one
// datagram to the notify socket (NOTIFY_SOCKET, a path, or an abstract
// address when it starts with '@'). Without a notify socket, as when the
// program runs by hand, Notify does nothing and returns nil. It does not
// block beyond the send and is safe for concurrent use.
func Notify(state string) error {
	return sendNotify(load().notify, state)
}

// Ready tells the master that the worker serves: it sends "READY=1". A master
// that has seen any notify message from the worker (the first [Listen] sends
// one) moves traffic to the new generation only after every worker's Ready.
//
// Before that, Ready closes the inherited sockets that no [Listen] or
// [ListenPacket] has taken, so the worker holds no socket it never accepts
// from; take every socket you need before calling Ready. Ready does nothing
// but that when there is no notify socket, and returns nil then. Calling it
// again sends READY=1 again, which is harmless.
func Ready() error {
	e := load()
	return errors.Join(e.closeUnused(), sendNotify(e.notify, protocol.NotifyReady))
}

// readyDraining is Ready for ServeHTTP, whose drain answers with
// "Connection: close" and closes idle connections only after a grace: it
// says so (protocol.NotifyDrainsKeepAlive), and the master then leaves the
// worker's keep-alive connections to it.
func readyDraining() error {
	e := load()
	return errors.Join(e.closeUnused(), sendNotify(e.notify, protocol.NotifyReady+"\n"+protocol.NotifyDrainsKeepAlive))
}

func sendNotify(addr, state string) error {
	if addr == "" {
		return nil
	}
	// An unbound datagram socket per message, as sd_notify does: nothing to
	// keep open or to leak into subprocesses. On Linux the net package turns
	// a leading '@' into the NUL byte of an abstract address.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("child: notify %q: %w", state, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("child: notify %q: %w", state, err)
	}
	return nil
}
