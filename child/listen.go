package child

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/hotcluster/hotcluster/child/internal/protocol"
)

// kind is what an inherited descriptor turned out to be.
type kind int

const (
	kindOther    kind = iota // not a socket, or one neither call can use
	kindListener             // a listening stream (or seqpacket) socket
	kindPacket               // a datagram socket
)

func (k kind) String() string {
	switch k {
	case kindListener:
		return "listening stream socket"
	case kindPacket:
		return "datagram socket"
	default:
		return "descriptor that is neither a listening nor a datagram socket"
	}
}

// Listen returns the inherited listening socket called name as a
// net.Listener. With an empty name it returns the first inherited listening
// socket not yet taken. When the program inherited no socket at all (it runs
// by hand) Listen binds network and addr itself with net.Listen instead.
//
// If sockets were inherited but none is called name, Listen fails with an
// error listing the names there are; it never falls back to binding then. Each
// inherited socket can be taken once: the library closes its own descriptor
// after net.FileListener made the listener's duplicate, and closing the
// returned listener closes only that duplicate (never shutdown(2)), so the
// master and the other workers keep the socket. Listen is safe for concurrent
// use.
func Listen(name, network, addr string) (net.Listener, error) {
	e := load()
	if e.err != nil {
		return nil, e.err
	}
	if len(e.sockets) == 0 {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, fmt.Errorf("child: %w", err)
		}
		return ln, nil
	}
	f, err := e.take(name, kindListener)
	if err != nil {
		return nil, err
	}
	// net.FileListener duplicates the descriptor (close-on-exec) and sets
	// O_NONBLOCK on it, which the inherited socket already has. f came from
	// os.NewFile on a non-blocking descriptor, so f.Fd, which FileListener
	// calls, leaves the flag alone (see newFile's kindNonBlock in os).
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("child: inherited socket %q: %w", f.Name(), err)
	}
	return ln, nil
}

// ListenPacket is [Listen] for datagram sockets (UDP, unixgram): it returns
// the inherited datagram socket called name (the first one not yet taken if
// name is empty), or, when no socket was inherited, binds network and addr
// with net.ListenPacket.
func ListenPacket(name, network, addr string) (net.PacketConn, error) {
	e := load()
	if e.err != nil {
		return nil, e.err
	}
	if len(e.sockets) == 0 {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			return nil, fmt.Errorf("child: %w", err)
		}
		return pc, nil
	}
	f, err := e.take(name, kindPacket)
	if err != nil {
		return nil, err
	}
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("child: inherited socket %q: %w", f.Name(), err)
	}
	return pc, nil
}

// take finds the inherited socket called name (or the first of the wanted
// kind when name is empty), marks it taken and wraps it in a file that the
// caller closes. The first take sends STATUS=starting to the notify socket.
func (e *environ) take(name string, want kind) (*os.File, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		e.started = true
		e.starting = Notify(protocol.NotifyStatus + "starting")
	}
	if e.starting != nil {
		return nil, e.starting
	}
	s, err := e.find(name, want)
	if err != nil {
		return nil, err
	}
	s.taken = true
	return os.NewFile(uintptr(s.fd), s.name), nil
}

func (e *environ) find(name string, want kind) (*socket, error) {
	var seen *socket // a socket with that name, already used up
	for _, s := range e.sockets {
		if name != "" && s.name != name {
			continue
		}
		if s.taken || s.closed {
			if name != "" {
				seen = s
			}
			continue
		}
		k, err := sockKind(s.fd)
		if err != nil {
			return nil, fmt.Errorf("child: inherited socket %q (fd %d): %w", s.name, s.fd, err)
		}
		if k == want {
			return s, nil
		}
		if name != "" {
			return nil, fmt.Errorf("child: inherited socket %q (fd %d) is a %v, want a %v", s.name, s.fd, k, want)
		}
	}
	switch {
	case seen != nil && seen.closed:
		return nil, fmt.Errorf("child: inherited socket %q was closed by Ready, which closes the sockets nobody took before it", seen.name)
	case seen != nil && name != "":
		return nil, fmt.Errorf("child: inherited socket %q already taken", name)
	case name != "":
		return nil, fmt.Errorf("child: no inherited socket named %q; inherited: %s", name, e.describe())
	default:
		return nil, fmt.Errorf("child: no inherited %v left; inherited: %s", want, e.describe())
	}
}

// describe lists the inherited sockets for error messages.
func (e *environ) describe() string {
	var b strings.Builder
	for i, s := range e.sockets {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (fd %d)", s.name, s.fd)
	}
	return b.String()
}

// closeUnused closes the inherited descriptors nobody took, so that the
// worker does not keep a socket alive, and queueing connections, that it
// never accepts from.
func (e *environ) closeUnused() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, s := range e.sockets {
		if s.taken || s.closed {
			continue
		}
		s.closed = true
		if err := closeFd(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("child: close unused socket %q (fd %d): %w", s.name, s.fd, err))
		}
	}
	return errors.Join(errs...)
}
