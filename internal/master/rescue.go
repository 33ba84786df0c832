package master

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/hotcluster/hotcluster/internal/handoff"
	"github.com/hotcluster/hotcluster/internal/rescue"
)

// openRescue makes the rescuer of the steered TCP listeners: what is left
// in the accept queue of a socket that no generation serves any more is
// relayed to the serving generation instead of reset (handoff hands it
// over through Config.Stranded). It runs as an actor of Run.
func (m *Master) openRescue(*undoList) error {
	if m.socks == nil {
		return nil
	}
	var ls []rescue.Listener
	for _, l := range m.socks.Listeners() {
		if l.Mode != handoff.Steered || !strings.HasPrefix(l.Spec.Network, "tcp") {
			continue
		}
		a, err := netip.ParseAddrPort(l.Addr)
		if err != nil {
			// A name the kernel did not give: nothing to dial back to.
			m.log.Warn(fmt.Sprintf("listen %s: connections left in a retired socket's queue will be reset: address %q: %v", l.Spec.Name, l.Addr, err))
			continue
		}
		ls = append(ls, rescue.Listener{Name: l.Spec.Name, Addr: a, Mode: rescue.Queue})
	}
	if len(ls) == 0 {
		return nil
	}
	var err error
	m.rescue, err = rescue.New(rescue.Config{
		Listeners: ls,
		// From a stop request on, no generation will serve for long:
		// what is stranded then is reset, as the sockets' close would.
		Armed: func() bool { return !m.stopping.Load() },
		Log:   m.log,
	})
	return err
}

// stranded is handoff's Config.Stranded: the rescuer's, once it exists.
func (m *Master) stranded(listener string, socket int, fds []int) int {
	if m.rescue == nil {
		return 0
	}
	return m.rescue.Stranded(listener, socket, fds)
}
