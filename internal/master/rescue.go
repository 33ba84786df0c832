package master

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/internal/handoff"
	"github.com/hotcluster/hotcluster/internal/rescue"
	"github.com/hotcluster/hotcluster/workers"
)

// openRescue makes the rescuer of the steered TCP listeners (--rescue): what
// is left in the accept queue of a socket that no generation serves any
// more is relayed to the serving generation instead of reset (handoff
// hands it over through Config.Stranded), and in HTTP mode the old
// workers' keep-alive connections are held at their stop signal (see
// hold). It runs as an actor of Run.
func (m *Master) openRescue(*undoList) error {
	if m.socks == nil {
		return nil
	}
	var ls []rescue.Listener
	named := make(map[string]bool)
	for _, l := range m.socks.Listeners() {
		named[l.Spec.Name] = true
		mode := m.cfg.Rescue
		if mm, ok := m.cfg.RescueFor[l.Spec.Name]; ok {
			mode = mm
		}
		if mode == rescue.Off || l.Mode != handoff.Steered || !strings.HasPrefix(l.Spec.Network, "tcp") {
			continue
		}
		a, err := netip.ParseAddrPort(l.Addr)
		if err != nil {
			// A name the kernel did not give: nothing to dial back to.
			m.log.Warn(fmt.Sprintf("listen %s: connections left in a retired socket's queue will be reset: address %q: %v", l.Spec.Name, l.Addr, err))
			continue
		}
		ls = append(ls, rescue.Listener{Name: l.Spec.Name, Addr: a, Mode: mode})
	}
	for name := range m.cfg.RescueFor {
		if !named[name] {
			return fmt.Errorf("--rescue %s=…: no listener is named %q (systemd's FileDescriptorName= names the ones it passes)", name, name)
		}
	}
	if len(ls) == 0 {
		return nil
	}
	drain := m.cfg.Pool.DrainTimeout
	if drain <= 0 {
		drain = workers.DefaultDrainTimeout
	}
	var err error
	m.rescue, err = rescue.New(rescue.Config{
		Listeners: ls,
		// The pool kills a worker still draining at its drain timeout;
		// what it holds then is its own until it is gone.
		HoldTimeout: drain + 5*time.Second,
		// From a stop request on, no generation will serve for long:
		// what is stranded then is reset, as the sockets' close would.
		Armed: func() bool { return !m.stopping.Load() },
		Log:   m.log,
	})
	if err != nil {
		return err
	}
	// A master an upgrade started goes on with the relays of the one
	// before (they come when it ends, see handOver).
	f, err := m.upg.File(rescue.RelaysFile)
	if err != nil {
		return err
	}
	if f != nil {
		return m.rescue.Adopt(f)
	}
	return nil
}

// Relays cross a binary upgrade: the old master hands them to the new one
// when it ends, rather than waiting for them (a relay lives as long as its
// client keeps the connection). prepareRelays makes the channel when an
// upgrade begins; relaysHandedOver says the new master serves;
// relaysStay forgets the channel of an upgrade that failed.
func (m *Master) prepareRelays() error {
	if m.rescue == nil {
		return nil
	}
	return m.rescue.PrepareSuccessor(m.upg)
}

func (m *Master) relaysHandedOver() {
	if m.rescue != nil {
		m.rescue.HandedOver()
	}
}

func (m *Master) relaysStay() {
	if m.rescue != nil {
		m.rescue.SuccessorFailed()
	}
}

// hold is the pool's BeforeStop: just before worker pid gets its stop
// signal, the rescuer takes a duplicate of each keep-alive connection it
// holds on an HTTP listener, and says how long the signal should wait
// (see rescue.Rescuer.Hold).
func (m *Master) hold(pid int, drains bool) time.Duration {
	if m.rescue == nil || pid <= 0 {
		return 0
	}
	return m.rescue.Hold(pid, rescue.HoldOptions{DrainsKeepAlive: drains})
}

// stranded is handoff's Config.Stranded: the rescuer's, once it exists.
func (m *Master) stranded(listener string, socket int, fds []int) int {
	if m.rescue == nil {
		return 0
	}
	return m.rescue.Stranded(listener, socket, fds)
}
