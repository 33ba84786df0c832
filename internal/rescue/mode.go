package rescue

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Mode says what the master does, at a turnover, for the connections of
// one listener that the old workers would otherwise lose.
type Mode int

const (
	// HTTP (the command line's --rescue http, its default): connections left in a
	// retired socket's accept queue are relayed to the serving generation
	// (as with Queue), and the keep-alive connections old workers hold at
	// their stop signal are held by the master too, and relayed when the
	// worker let go of one whose client's next HTTP/1.x request is waiting
	// unread.
	HTTP Mode = iota
	// Queue relays only what is left in a retired socket's accept queue,
	// whatever the protocol; the workers' own connections are theirs.
	Queue
	// Off resets what is left in a retired socket's accept queue (the
	// clients fail at once instead of waiting for good) and holds nothing.
	Off
)

// ParseMode reads "http", "queue" or "off".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "http":
		return HTTP, nil
	case "queue":
		return Queue, nil
	case "off":
		return Off, nil
	}
	return 0, fmt.Errorf("rescue mode %q: want http, queue or off", s)
}

func (m Mode) String() string {
	switch m {
	case HTTP:
		return "http"
	case Queue:
		return "queue"
	case Off:
		return "off"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Defaults for [Config].
const (
	// DefaultMax bounds the connections the master holds and relays at
	// once. Each relay costs two descriptors (client and upstream) and two
	// goroutines; each held connection one descriptor. A pipe pair is
	// borrowed only while bytes move.
	DefaultMax = 4096
	// DefaultHoldTimeout bounds how long the master keeps a duplicate of a
	// connection that its worker still holds; the pool kills a worker that
	// is still draining at --drain-timeout, so the master sets this to the
	// drain timeout plus a margin.
	DefaultHoldTimeout = 35 * time.Second
	// RequestWait bounds how long a connection its worker let go of may
	// wait for the rest of a request line that has begun to arrive.
	RequestWait = 2 * time.Second
	// HalfCloseTimeout bounds how long a relay keeps one direction open
	// after the other has ended.
	HalfCloseTimeout = 30 * time.Second
)

// HoldOptions says what Hold knows of the worker.
type HoldOptions struct {
	// DrainsKeepAlive: the worker drains its keep-alive connections
	// itself (it said so at ready: protocol.NotifyDrainsKeepAlive), so
	// its connections are held, not frozen, and it is not stopped at
	// rest: its requests go on as without the rescue.
	DrainsKeepAlive bool
}

// Listener is one listener the master may rescue connections of.
type Listener struct {
	// Name is the listener's name, as LISTEN_FDNAMES says it.
	Name string
	// Addr is the bound address; the unspecified address means every local
	// address on the port.
	Addr netip.AddrPort
	// Mode is what is done for its connections.
	Mode Mode

	// dial, when set, is where relays connect instead (tests, whose
	// "generations" listen on addresses of their own).
	dial string
}

// dialAddr is where a relay's upstream connects: the listener's own
// address, loopback for an unspecified one, so that the kernel's selector
// hands the connection to the serving generation.
func (l *Listener) dialAddr() string {
	if l.dial != "" {
		return l.dial
	}
	a := l.Addr.Addr()
	if a.IsUnspecified() {
		if a.Is4() {
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		} else {
			a = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(a, l.Addr.Port()).String()
}

// owns reports whether a connection whose local address is local came
// through this listener.
func (l *Listener) owns(local netip.AddrPort) bool {
	if local.Port() != l.Addr.Port() {
		return false
	}
	a := l.Addr.Addr()
	return a.IsUnspecified() || local.Addr().Unmap() == a.Unmap()
}

// Config describes what the rescuer may do. Zero fields take the defaults.
type Config struct {
	Listeners []Listener
	// Max bounds the connections held and relayed at once (DefaultMax);
	// beyond it a stranded connection is reset and a worker keeps its own.
	Max int
	// HoldTimeout bounds how long a connection its worker still holds is
	// held too (DefaultHoldTimeout).
	HoldTimeout time.Duration
	// Armed reports whether a generation serves that connections may be
	// relayed to: false while the master stops without a successor. Nil
	// means always.
	Armed func() bool
	// Log receives the rescuer's lines; nil discards them.
	Log *slog.Logger
}

// Status is what the rescuer has done, for status and metrics.
type Status struct {
	// Relays are the connections relayed now, Held those held now (their
	// worker still has them, or they wait for a request line).
	Relays, Held int
	// Counts since the master started: Queued connections taken from a
	// retired socket's accept queue and relayed; Relayed keep-alive
	// connections relayed once their worker let go; Redialed relays whose
	// upstream worker let go and that went on to a new upstream; Adopted
	// relays taken over from a previous master; Closed connections closed
	// because their client had sent nothing since its last answer; Reset
	// connections reset (a request the worker had read and not answered,
	// bytes that are not an HTTP/1.x request line, or a bound reached).
	Queued, Relayed, Redialed, Adopted, Closed, Reset uint64
	// Disabled says why keep-alive connections are not held, if they are
	// not ("" when they are, or no listener asks for it).
	Disabled string
}
