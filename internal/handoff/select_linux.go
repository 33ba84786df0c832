package handoff

import (
	"errors"
	"fmt"
	"os"

	"github.com/hotcluster/hotcluster/internal/reuseport"
	"golang.org/x/sys/unix"
)

// SlotSockets is the size of the eBPF selector's slot table.
var _ = [1]struct{}{}[SlotSockets-reuseport.MaxSlots]

// startSteering gives a group, whose socket 0 exists, its selector: eBPF
// where the kernel allows it, else classic BPF with the rest of the
// group's sockets created now (see GroupSize). Either way the program is in
// place before a second socket joins the group, or the kernel's hash would
// spread connections meanwhile.
func (l *listener) startSteering(cfg *Config) error {
	if !cfg.classic {
		sel, err := newEBPF(l.socks[0], 0, cfg.Balance)
		if err == nil {
			l.sel, l.limit = sel, reuseport.MaxSockets
			return nil
		}
		l.why = "eBPF selector refused (" + err.Error() + "); sockets joining the group later get no connections all the same"
		if errors.Is(err, unix.EPERM) {
			l.why = "eBPF not permitted (it needs CAP_BPF); sockets joining the group later get no connections all the same"
		}
	}
	c := &cbpf{group: l.socks[0]}
	if err := c.steer(0, nil); err != nil {
		return err
	}
	l.sel = c
	for len(l.socks) < GroupSize {
		if err := l.grow(); err != nil {
			return err
		}
	}
	l.limit = GroupSize
	return nil
}

// newEBPF makes an eBPF selector for a group of one socket, pointing at k.
func newEBPF(first *sock, k int, b Balance) (*ebpfSel, error) {
	sel, err := reuseport.New(b.selector())
	if err != nil {
		return nil, err
	}
	e := &ebpfSel{sel: sel}
	if err := e.add(k, first); err == nil {
		err = e.adopt(first, k, nil)
	}
	if err != nil {
		sel.Close()
		return nil, err
	}
	return e, nil
}

// inheritSelector gives a group taken over from a previous master its
// selector. The previous master's eBPF maps, if it stored them, must be
// used: a socket can be in one such map only. Without them the previous
// master steered with classic BPF (or predates eBPF selection): this one
// starts its own eBPF selector over the inherited sockets where allowed,
// else goes on with classic BPF.
func (s *Sockets) inheritSelector(l *listener) error {
	spec := l.spec
	k := 0
	if p := s.cfg.Previous; p != nil {
		k = p.Active
	}
	if k >= len(l.socks) {
		return fmt.Errorf("listen %s: the previous master steers to socket %d of %d", spec, k, len(l.socks))
	}
	// A previous master without slots stored no slot table, one before
	// sticky balance no sticky table.
	var maps reuseport.Maps
	for _, m := range []struct {
		to   **os.File
		name string
	}{{&maps.Sockets, "bpf-sockets"}, {&maps.Active, "bpf-active"}, {&maps.Slots, "bpf-slots"}, {&maps.Sticky, "bpf-sticky"}} {
		f, err := s.cfg.Store.File(storeKey(spec, m.name))
		if err != nil {
			maps.Close()
			return err
		}
		*m.to = f
	}
	if maps.Sockets != nil && maps.Active != nil {
		sel, err := reuseport.Inherit(maps, s.cfg.Balance.selector())
		maps.Close()
		if err != nil {
			return fmt.Errorf("listen %s: eBPF selector of the previous master: %w", spec, err)
		}
		e := &ebpfSel{sel: sel}
		for i, so := range l.socks {
			if ok, err := sel.Holds(i, so.cookie); err != nil || !ok {
				sel.Close()
				return fmt.Errorf("listen %s: socket %d is not where the previous master's selector has it (%v)", spec, i, err)
			}
		}
		for ks, so := range l.extra {
			if ok, err := sel.Holds(reuseport.SlotKey(ks[0], ks[1]), so.cookie); err != nil || !ok {
				sel.Close()
				return fmt.Errorf("listen %s: slot %d of socket %d is not where the previous master's selector has it (%v)", spec, ks[1], ks[0], err)
			}
		}
		if err := e.adopt(l.socks[0], k, upTo(l.slotsOf(k))); err != nil {
			sel.Close()
			return fmt.Errorf("listen %s: %w", spec, err)
		}
		l.sel, l.limit = e, reuseport.MaxSockets
		return nil
	}
	maps.Close()
	if !s.cfg.classic {
		if sel, err := reuseport.New(s.cfg.Balance.selector()); err == nil {
			e := &ebpfSel{sel: sel}
			for i, so := range l.socks {
				if err == nil {
					err = e.add(i, so)
				}
			}
			for ks, so := range l.extra {
				if err == nil {
					err = e.add(reuseport.SlotKey(ks[0], ks[1]), so)
				}
			}
			if err == nil {
				err = e.adopt(l.socks[0], k, upTo(l.slotsOf(k)))
			}
			if err == nil {
				l.sel, l.limit = e, reuseport.MaxSockets
				return nil
			}
			sel.Close()
		}
	}
	c := &cbpf{group: l.socks[0]}
	if err := c.steer(k, nil); err != nil {
		return fmt.Errorf("listen %s: steer the inherited group: %w", spec, err)
	}
	l.sel, l.limit = c, len(l.socks)
	if len(l.socks) < GroupSize {
		// A previous master that grew its group on demand. Growing is safe
		// only while no other socket sits in the group: one that joined
		// before a new socket would take that socket's position.
		if fs, err := listForeign(spec, l.network, l.addr, l.socks); err == nil && len(fs) == 0 {
			for len(l.socks) < GroupSize && l.grow() == nil {
			}
			if fs, err := listForeign(spec, l.network, l.addr, l.socks); err == nil && len(fs) == 0 {
				l.limit = len(l.socks)
			}
		}
	}
	return nil
}

// cbpf is the classic BPF selector: a one-instruction program "return k"
// (SO_ATTACH_REUSEPORT_CBPF), which selects by position in the group.
type cbpf struct{ group *sock }

func (c *cbpf) kind() string              { return "cbpf" }
func (c *cbpf) slotted() bool             { return false }
func (c *cbpf) add(int, *sock) error      { return nil }
func (c *cbpf) persist(Store, Spec) error { return nil }
func (c *cbpf) close()                    {}

// steer replaces the group's program through any of its sockets.
func (c *cbpf) steer(k int, _ []int) error {
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(k)}}
	fprog := unix.SockFprog{Len: 1, Filter: &prog[0]}
	var serr error
	if err := c.group.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return err
	}
	return serr
}

func (c *cbpf) reclaim(_ *sock, k int, _ []int) error { return c.steer(k, nil) }

// ebpfSel selects by socket identity (package internal/reuseport).
type ebpfSel struct{ sel *reuseport.Selector }

func (e *ebpfSel) kind() string { return "ebpf" }

func (e *ebpfSel) slotted() bool { return e.sel.Slotted() }

func (e *ebpfSel) add(k int, so *sock) error {
	var err error
	so.rc.Control(func(fd uintptr) { err = e.sel.Set(k, int(fd)) })
	return err
}

// steer spreads new connections over the sockets of generation key k's
// slots (slot 0 alone without a slot table, or with no slots given).
func (e *ebpfSel) steer(k int, slots []int) error {
	if !e.sel.Slotted() {
		return e.sel.Steer(k)
	}
	if len(slots) == 0 {
		slots = []int{0}
	}
	keys := make([]int, len(slots))
	for i, slot := range slots {
		keys[i] = reuseport.SlotKey(k, slot)
	}
	return e.sel.SteerSlots(keys)
}

// adopt points the selector at k's slots, then attaches its program to the
// group (replacing whatever program it had) through socket group.
func (e *ebpfSel) adopt(group *sock, k int, slots []int) error {
	if err := e.steer(k, slots); err != nil {
		return err
	}
	var err error
	group.rc.Control(func(fd uintptr) { err = e.sel.Attach(int(fd)) })
	return err
}

func (e *ebpfSel) reclaim(group *sock, k int, slots []int) error { return e.adopt(group, k, slots) }

func (e *ebpfSel) persist(st Store, spec Spec) error {
	maps, err := e.sel.Files()
	if err != nil {
		return err
	}
	defer maps.Close()
	for _, m := range []struct {
		f    *os.File
		name string
	}{{maps.Slots, "bpf-slots"}, {maps.Sticky, "bpf-sticky"}, {maps.Sockets, "bpf-sockets"}, {maps.Active, "bpf-active"}} {
		if m.f == nil {
			continue
		}
		if err := st.AddFile(storeKey(spec, m.name), m.f); err != nil {
			return err
		}
	}
	return nil
}

// selector is b as package reuseport names it.
func (b Balance) selector() reuseport.Balance {
	if b == BalanceSticky {
		return reuseport.Sticky
	}
	return reuseport.Hash
}

func (e *ebpfSel) close() { e.sel.Close() }
