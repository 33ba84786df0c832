// Package reuseport decides, by socket identity, which socket of a
// SO_REUSEPORT group receives each new connection. It is package handoff's
// alone, and the only importer of github.com/cilium/ebpf.
//
// Invariant: the group's program hands a connection to the socket stored
// under the active key of a REUSEPORT_SOCKARRAY map that only the master
// fills, or to nobody. It never falls back to the kernel's hash over the
// whole group, which would include sockets that other processes of the
// same user joined to it: those get no connection, whatever their place in
// the group.
//
// # Program
//
// One SK_REUSEPORT program per group, written with package asm (no clang,
// no object file):
//
//	key := active[0]
//	if bpf_sk_select_reuseport(ctx, sockets, &key, 0) == 0 { return SK_PASS }
//	return SK_DROP
//
// [Selector.Steer] updates active[0]; a map update is atomic, so traffic
// moves without re-attaching anything. SK_DROP is not silent: the kernel
// answers a TCP SYN with a reset and a UDP datagram with ICMP port
// unreachable (reuseport_select_sock returns ERR_PTR(-ECONNREFUSED) and the
// listener lookup finds nothing). It happens only when the active key holds
// no socket, which the caller prevents by storing a socket before it steers
// to it. The program type and the map arrived in Linux 4.19
// (https://git.kernel.org/torvalds/c/2dbb9b9e6df6); the behaviour above is
// that of the kernel's net/core/sock_reuseport.c (reuseport_select_sock),
// net/core/filter.c (sk_select_reuseport) and kernel/bpf/reuseport_array.c.
//
// # Sticky balance
//
// With [Sticky] the program picks the slot by the client's source address
// rather than by flow hash: it reads the address from the packet's network
// header (bpf_skb_load_bytes_relative, BPF_HDR_START_NET), hashes it
// ([SourceHash]) to an entry of a table of [TableSize] socket keys, and
// selects that key. The master fills the table by rendezvous hashing over
// the slots it steers to ([StickyTable]): each entry goes to the slot with
// the highest weight for it, so an entry moves only when its slot leaves or
// a slot that outweighs it arrives (N to N+1 slots moves about 1/(N+1) of
// the entries, and no entry between two slots that stay), and the weights
// are of slot numbers, not generations: a slot's new socket takes over
// the entries of the slot's old one. See sticky.go.
//
// # Across an upgrade of the master
//
// A socket can be in one REUSEPORT_SOCKARRAY at a time (the kernel keeps
// the map's slot in sk_user_data and refuses a second map with EBUSY), and
// the old master's map lives as long as its program is attached. So the
// maps themselves cross the upgrade ([Selector.Files], [Inherit]); the new
// master loads its own program over them and attaches it, which replaces
// the old one atomically.
//
// # Privileges
//
// Loading the program and creating the maps need CAP_BPF (or
// CAP_SYS_ADMIN): SK_REUSEPORT programs are never allowed to unprivileged
// users, whatever /proc/sys/kernel/unprivileged_bpf_disabled says. [New]
// then fails, and package handoff falls back to classic BPF. Updating the
// maps later needs only their descriptors.
package reuseport

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// MaxSockets is the number of generation keys of a group: a socket map
// made by a master without slots ([Inherit] without a slot table) holds
// exactly these.
const MaxSockets = 64

// MaxSlots is how many sockets, one per worker slot, a generation key can
// have in a slotted selector; slot s of key k is stored under [SlotKey].
const MaxSlots = 64

// SlotKey is the socket-map key of slot's socket of generation key k. Slot
// 0 of key k is key k, where a selector without slots keeps its sockets,
// so that both layouts agree on it.
func SlotKey(k, slot int) int { return slot*MaxSockets + k }

// bank is the size of one half of the slot table: a count, then the keys.
const bank = 1 + MaxSlots

// Selector is one group's program and maps. Its methods are not safe for
// concurrent use; package handoff calls them under its lock.
type Selector struct {
	sockets *ebpf.Map // REUSEPORT_SOCKARRAY: key k -> the master's socket k
	// active is an ARRAY of one u32: without slots, the key to select;
	// with slots, which bank of the slot table is in use (0 or 1).
	active *ebpf.Map
	// slots, nil for a selector without slots, is an ARRAY of u32 in two
	// banks of [bank] entries: the number n of sockets selected, then their
	// keys. The program takes key[ctx->hash % n] of the bank in use; Steer
	// fills the other bank and flips active, so a connection never sees a
	// half-written table (bar one that reads the bank across two flips,
	// which are milliseconds apart).
	slots *ebpf.Map
	// sticky, nil for a selector without slots, is an ARRAY of u32 in two
	// banks of [TableSize] socket keys, the banks of active like slots'.
	// Only the program of a [Sticky] selector reads it, and only such a
	// selector fills it; it crosses an upgrade all the same, so that a
	// master of either balance can take over from one of the other.
	sticky  *ebpf.Map
	balance Balance
	prog    *ebpf.Program
	// cur is the bank in use, as written to active.
	cur uint32
}

// Balance says how a selector with a slot table spreads new connections
// over the slots it steers to.
type Balance int

const (
	// Hash spreads them by the kernel's flow hash (the 4-tuple).
	Hash Balance = iota
	// Sticky sends each client source address to one slot, the same one
	// across steering to another generation's sockets (see the package
	// comment).
	Sticky
)

func (b Balance) String() string {
	if b == Sticky {
		return "sticky"
	}
	return "hash"
}

// New creates the maps and loads the program of balance b, with a slot
// table (see [Selector.SteerSlots]). It fails, among other reasons,
// without CAP_BPF (see the package comment).
func New(b Balance) (*Selector, error) {
	sockets, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "hc_sockets", Type: ebpf.ReusePortSockArray,
		KeySize: 4, ValueSize: 8, MaxEntries: MaxSockets * MaxSlots,
	})
	if err != nil {
		return nil, fmt.Errorf("reuseport: create the socket map: %w", err)
	}
	active, err := ebpf.NewMap(&ebpf.MapSpec{Name: "hc_active", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		sockets.Close()
		return nil, fmt.Errorf("reuseport: create the active-key map: %w", err)
	}
	slots, err := ebpf.NewMap(&ebpf.MapSpec{Name: "hc_slots", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2 * bank})
	if err != nil {
		sockets.Close()
		active.Close()
		return nil, fmt.Errorf("reuseport: create the slot table: %w", err)
	}
	s := &Selector{sockets: sockets, active: active, slots: slots, balance: b}
	if s.sticky, err = newStickyMap(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Maps are the files of a selector's maps, as [Selector.Files] makes them
// for the master an upgrade starts and [Inherit] takes them. Slots is nil
// for a master that kept no slot table, Sticky for one that predates
// sticky balance.
type Maps struct {
	Sockets, Active, Slots, Sticky *os.File
}

// Close closes the files that are set.
func (m Maps) Close() {
	for _, f := range []*os.File{m.Sockets, m.Active, m.Slots, m.Sticky} {
		if f != nil {
			f.Close()
		}
	}
}

// Inherit takes the maps a previous master stored (see [Selector.Files])
// and loads a program of balance b over them. Without m.Slots (the
// previous master kept no slot table: one socket per generation) the
// selector has no slots either, and [Sticky] is refused; without m.Sticky
// (a previous master that predates it) the table is made anew. It
// duplicates the descriptors; the caller keeps and closes the files.
func Inherit(m Maps, b Balance) (*Selector, error) {
	if b == Sticky && m.Slots == nil {
		return nil, errors.New("reuseport: sticky balance needs a slot table, and the previous master kept none (it predates sockets per slot): restart the instance")
	}
	sm, err := mapOf(m.Sockets)
	if err != nil {
		return nil, err
	}
	am, err := mapOf(m.Active)
	if err != nil {
		sm.Close()
		return nil, err
	}
	s := &Selector{sockets: sm, active: am, balance: b}
	if m.Slots != nil {
		if s.slots, err = mapOf(m.Slots); err != nil {
			s.Close()
			return nil, err
		}
		if m.Sticky != nil {
			s.sticky, err = mapOf(m.Sticky)
		} else {
			s.sticky, err = newStickyMap()
		}
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	switch {
	case sm.Type() != ebpf.ReusePortSockArray || sm.KeySize() != 4 || sm.ValueSize() != 8 || sm.MaxEntries() < MaxSockets:
		err = fmt.Errorf("reuseport: inherited socket map is a %v of %d entries (%d-byte keys, %d-byte values), not the sockarray this master makes",
			sm.Type(), sm.MaxEntries(), sm.KeySize(), sm.ValueSize())
	case am.Type() != ebpf.Array || am.KeySize() != 4 || am.ValueSize() != 4 || am.MaxEntries() != 1:
		err = fmt.Errorf("reuseport: inherited active-key map is a %v of %d entries, not an array of one u32", am.Type(), am.MaxEntries())
	case s.slots != nil && (s.slots.Type() != ebpf.Array || s.slots.ValueSize() != 4 || s.slots.MaxEntries() != 2*bank || sm.MaxEntries() < MaxSockets*MaxSlots):
		err = fmt.Errorf("reuseport: inherited slot table is a %v of %d entries over a socket map of %d, not the table this master makes", s.slots.Type(), s.slots.MaxEntries(), sm.MaxEntries())
	case s.sticky != nil && (s.sticky.Type() != ebpf.Array || s.sticky.KeySize() != 4 || s.sticky.ValueSize() != 4 || s.sticky.MaxEntries() != 2*TableSize):
		err = fmt.Errorf("reuseport: inherited sticky table is a %v of %d entries, not the %d this master makes", s.sticky.Type(), s.sticky.MaxEntries(), 2*TableSize)
	default:
		if s.slots != nil {
			err = s.active.Lookup(uint32(0), &s.cur)
		}
		if err == nil {
			err = s.load()
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func mapOf(f *os.File) (*ebpf.Map, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("reuseport: inherited map %s: %w", f.Name(), err)
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("reuseport: inherited map %s: %w", f.Name(), err)
	}
	if derr != nil {
		return nil, fmt.Errorf("reuseport: inherited map %s: dup: %w", f.Name(), derr)
	}
	m, err := ebpf.NewMapFromFD(nfd) // owns nfd from here, also on error
	if err != nil {
		return nil, fmt.Errorf("reuseport: inherited map %s: %w", f.Name(), err)
	}
	return m, nil
}

// Slotted reports whether s has a slot table ([Selector.SteerSlots]).
func (s *Selector) Slotted() bool { return s.slots != nil }

// load loads the program over s's maps (see the package comment).
func (s *Selector) load() error {
	if s.slots != nil {
		if s.balance == Sticky {
			return s.loadSticky()
		}
		return s.loadSlotted()
	}
	const (
		keyOff    = -4 // the active-map key (0), on the stack
		activeOff = -8 // the copy of the active key passed to the helper
	)
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx, kept across the first call
		asm.StoreImm(asm.RFP, keyOff, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, s.active.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
	}
	insns = append(insns, selectKey(s.sockets, activeOff)...)
	// bpf_sk_select_reuseport and bpf_map_lookup_elem are not GPL-only
	// helpers: the program needs no license string.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "hc_select", Type: ebpf.SkReuseport, Instructions: insns})
	if err != nil {
		return fmt.Errorf("reuseport: load the SK_REUSEPORT program: %w", err)
	}
	s.prog = prog
	return nil
}

// selectKey ends both programs: the socket key is the word R0 points at
// (a map value just looked up); it is stored at off on the stack and
// handed to bpf_sk_select_reuseport with the ctx kept in R6. SK_PASS when
// the helper took it, SK_DROP otherwise and at the "drop" label.
func selectKey(sockets *ebpf.Map, off int16) asm.Instructions {
	const (
		skPass = 1 // SK_PASS
		skDrop = 0 // SK_DROP
	)
	return asm.Instructions{
		asm.LoadMem(asm.R3, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, off, asm.R3, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, sockets.FD()),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(off)),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
		asm.Mov.Imm(asm.R0, skPass),
		asm.Return(),
		asm.Mov.Imm(asm.R0, skDrop).WithSymbol("drop"),
		asm.Return(),
	}
}

// loadSlotted loads the program of a selector with a slot table:
//
//	b := active[0] * bank
//	n := slots[b]
//	if n == 0 { return SK_DROP }
//	key := slots[b + 1 + ctx->hash % n]
//	if bpf_sk_select_reuseport(ctx, sockets, &key, 0) == 0 { return SK_PASS }
//	return SK_DROP
//
// ctx->hash is the flow hash the kernel computed for the group's own
// choice (inet_ehashfn over the 4-tuple for TCP, udp_ehashfn for UDP), so
// a flow keeps its socket while the table stays, and flows spread evenly
// over the n sockets.
func (s *Selector) loadSlotted() error {
	const (
		keyOff  = -4 // lookup key, on the stack
		sockOff = -8 // the socket key passed to the helper
		hashOff = 32 // offsetof(struct sk_reuseport_md, hash)
	)
	lookup := func(m *ebpf.Map) asm.Instructions {
		return asm.Instructions{
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, keyOff),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
		}
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx, kept across the calls
		asm.StoreImm(asm.RFP, keyOff, 0, asm.Word),
	}
	insns = append(insns, lookup(s.active)...)
	insns = append(insns,
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.Mul.Imm(asm.R7, bank), // r7: the bank's first entry
		asm.StoreMem(asm.RFP, keyOff, asm.R7, asm.Word),
	)
	insns = append(insns, lookup(s.slots)...)
	insns = append(insns,
		asm.LoadMem(asm.R8, asm.R0, 0, asm.Word), // n
		asm.JEq.Imm(asm.R8, 0, "drop"),
		asm.LoadMem(asm.R9, asm.R6, hashOff, asm.Word),
		asm.Mod.Reg(asm.R9, asm.R8),
		asm.Add.Reg(asm.R9, asm.R7),
		asm.Add.Imm(asm.R9, 1),
		asm.StoreMem(asm.RFP, keyOff, asm.R9, asm.Word),
	)
	insns = append(insns, lookup(s.slots)...)
	insns = append(insns, selectKey(s.sockets, sockOff)...)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "hc_select_slot", Type: ebpf.SkReuseport, Instructions: insns})
	if err != nil {
		return fmt.Errorf("reuseport: load the SK_REUSEPORT program: %w", err)
	}
	s.prog = prog
	return nil
}

// Attach makes the program the selector of fd's group
// (SO_ATTACH_REUSEPORT_EBPF), replacing any program the group had. fd must
// be bound with SO_REUSEPORT; attach before a second socket joins, or the
// kernel's hash spreads connections until then.
func (s *Selector) Attach(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, s.prog.FD()); err != nil {
		return fmt.Errorf("reuseport: attach the program: %w", err)
	}
	return nil
}

// Set stores socket fd (listening, for TCP; bound, for UDP) under key k.
// A socket already stored, here or in another map, is refused (EBUSY).
func (s *Selector) Set(k, fd int) error {
	if k < 0 || k >= int(s.sockets.MaxEntries()) {
		return fmt.Errorf("reuseport: socket %d: the map holds %d", k, s.sockets.MaxEntries())
	}
	if err := s.sockets.Update(uint32(k), uint64(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport: store socket %d: %w", k, err)
	}
	return nil
}

// Holds reports whether key k holds the socket whose SO_COOKIE is cookie.
func (s *Selector) Holds(k int, cookie uint64) (bool, error) {
	var got uint64
	err := s.sockets.Lookup(uint32(k), &got)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reuseport: look up socket %d: %w", k, err)
	}
	return got == cookie, nil
}

// Steer makes the program select the socket under key k from now on.
// With a slot table it is SteerSlots(k).
func (s *Selector) Steer(k int) error {
	if s.slots != nil {
		return s.SteerSlots([]int{k})
	}
	if err := s.active.Update(uint32(0), uint32(k), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport: steer to socket %d: %w", k, err)
	}
	return nil
}

// SteerSlots makes the program spread new connections over the sockets
// under keys, by flow hash (see [Selector.loadSlotted]) or, for a [Sticky]
// selector, by source address over the slots the keys are of
// ([StickyTable]; keys of one slot in several generations would split its
// entries among them): it fills the bank not in use, then flips to it.
// Every key must hold a socket. It needs a slot table ([Selector.Slotted]).
func (s *Selector) SteerSlots(keys []int) error {
	if s.slots == nil {
		return errors.New("reuseport: steer to slots: this selector has no slot table")
	}
	if len(keys) == 0 || len(keys) > MaxSlots {
		return fmt.Errorf("reuseport: steer to %d sockets: between 1 and %d", len(keys), MaxSlots)
	}
	next := 1 - s.cur
	base := next * bank
	for i, k := range keys {
		if err := s.slots.Update(base+1+uint32(i), uint32(k), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("reuseport: steer to socket %d: %w", k, err)
		}
	}
	if err := s.slots.Update(base, uint32(len(keys)), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport: steer to %d sockets: %w", len(keys), err)
	}
	if s.balance == Sticky {
		if err := s.fillSticky(next, keys); err != nil {
			return fmt.Errorf("reuseport: steer to %d sockets: %w", len(keys), err)
		}
	}
	if err := s.active.Update(uint32(0), next, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport: steer to %d sockets: %w", len(keys), err)
	}
	s.cur = next
	return nil
}

// Files returns close-on-exec duplicates of the maps, to store for the
// master an upgrade starts ([Inherit]); Slots and Sticky are nil without a
// slot table. The caller closes them.
func (s *Selector) Files() (Maps, error) {
	dup := func(m *ebpf.Map, name string) (*os.File, error) {
		if m == nil {
			return nil, nil
		}
		nfd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("reuseport: dup the %s map: %w", name, err)
		}
		return os.NewFile(uintptr(nfd), name), nil
	}
	var fs Maps
	var err error
	for _, d := range []struct {
		to   **os.File
		m    *ebpf.Map
		name string
	}{{&fs.Sockets, s.sockets, "sockets"}, {&fs.Active, s.active, "active"}, {&fs.Slots, s.slots, "slots"}, {&fs.Sticky, s.sticky, "sticky"}} {
		if *d.to, err = dup(d.m, d.name); err != nil {
			fs.Close()
			return Maps{}, err
		}
	}
	return fs, nil
}

// Close releases this process's references. An attached program and its
// maps stay in the kernel for as long as the group lives.
func (s *Selector) Close() {
	if s.prog != nil {
		s.prog.Close()
	}
	s.sockets.Close()
	s.active.Close()
	if s.slots != nil {
		s.slots.Close()
	}
	if s.sticky != nil {
		s.sticky.Close()
	}
}
