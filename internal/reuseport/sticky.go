package reuseport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TableSize is the number of entries of the sticky table: source addresses
// hash to one of them, and each names a slot's socket. A power of two (the
// program masks the hash); 4096 entries over at most 64 slots leave each
// slot's share within a few percent of even (see [StickyTable]), for 32 KiB
// of kernel memory per listener (two banks).
const TableSize = 4096

func newStickyMap() (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "hc_sticky", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2 * TableSize})
	if err != nil {
		return nil, fmt.Errorf("reuseport: create the sticky table: %w", err)
	}
	return m, nil
}

// SourceHash is the hash the sticky program computes of a client's source
// address: the address's bytes read as native-endian 32-bit words (one for
// IPv4, four for IPv6), each folded in with murmur3's 32-bit finaliser. An
// IPv4-mapped IPv6 address hashes as the IPv4 address, as the kernel hands
// such a client to a dual-stack socket in an IPv4 packet. The entry is
// SourceHash(addr) % [TableSize]. It is part of the contract between
// masters: a master that hashed otherwise would move every client at an
// upgrade.
func SourceHash(addr netip.Addr) uint32 {
	b := addr.Unmap().AsSlice()
	h := fmix32(binary.NativeEndian.Uint32(b[0:4]))
	for i := 4; i < len(b); i += 4 {
		h = fmix32(h ^ binary.NativeEndian.Uint32(b[i:i+4]))
	}
	return h
}

func fmix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// StickyTable returns the sticky table for the given slots (socket slot
// numbers, each at most once): entry e names the slot of highest
// [weight](e, slot), ties going to the lower slot. This is rendezvous
// (highest random weight) hashing, chosen over Maglev and jump hash for
// two properties the slot sets of a worker group need: any set, not only
// 0..n-1 (a slot whose worker is down is left out while the others keep
// their clients), and the least movement possible: an entry changes only
// when its slot leaves or the slot that comes outweighs it, so N to N+1
// slots moves 1/(N+1) of the entries on average and none among the slots
// that stay. The price is balance: each slot's share is binomial, about
// TableSize/N with a standard deviation of sqrt(TableSize/N) (for 4 slots
// 1024 ± 28), where Maglev's would be within one entry.
func StickyTable(slots []int) [TableSize]int {
	var t [TableSize]int
	for e := range t {
		best, bw := -1, uint64(0)
		for _, s := range slots {
			if w := weight(e, s); best < 0 || w > bw || w == bw && s < best {
				best, bw = s, w
			}
		}
		t[e] = best
	}
	return t
}

// weight is entry e's weight for slot s: splitmix64's finaliser of both
// (https://prng.di.unimi.it/splitmix64.c). Like SourceHash, it is part of
// the contract between masters.
func weight(e, s int) uint64 {
	z := uint64(e)<<32 | uint64(uint32(s))
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// fillSticky writes bank b of the sticky table for the sockets under keys:
// each entry gets the key of the slot [StickyTable] gives it (a key's slot
// is key / MaxSockets, see [SlotKey]).
func (s *Selector) fillSticky(b uint32, keys []int) error {
	byslot := make(map[int]int, len(keys))
	slots := make([]int, 0, len(keys))
	for _, k := range keys {
		slot := k / MaxSockets
		if _, dup := byslot[slot]; !dup {
			slots = append(slots, slot)
		}
		byslot[slot] = k
	}
	t := StickyTable(slots)
	idx := make([]uint32, TableSize)
	vals := make([]uint32, TableSize)
	for e, slot := range t {
		idx[e] = b*TableSize + uint32(e)
		vals[e] = uint32(byslot[slot])
	}
	// One syscall for the bank where the kernel has batch operations on
	// arrays (5.6), else one per entry (4096, a few milliseconds).
	n, err := s.sticky.BatchUpdate(idx, vals, nil)
	if err == nil && n == TableSize {
		return nil
	}
	if err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("fill the sticky table: %w", err)
	}
	for e := range idx {
		if err := s.sticky.Update(idx[e], vals[e], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill the sticky table: %w", err)
		}
	}
	return nil
}

// loadSticky loads the program of a [Sticky] selector:
//
//	b := active[0]
//	if eth_protocol == ETH_P_IPV6 { h := hash of the 16 bytes at 8 of the IPv6 header }
//	else { h := hash of the 4 bytes at 12 of the IPv4 header }
//	key := sticky[b*TableSize + h%TableSize]
//	if bpf_sk_select_reuseport(ctx, sockets, &key, 0) == 0 { return SK_PASS }
//	return SK_DROP
//
// The hash is [SourceHash]. bpf_skb_load_bytes_relative with
// BPF_HDR_START_NET reads from the network header, though the packet's
// data starts at the transport header when the group's program runs (TCP
// SYN and UDP datagram alike); an SK_REUSEPORT program may call it since
// Linux 4.19 (net/core/filter.c, sk_reuseport_func_proto).
func (s *Selector) loadSticky() error {
	const (
		keyOff   = -4  // lookup key, on the stack
		sockOff  = -8  // the socket key passed to the helper
		addrOff  = -32 // the source address, 16 bytes
		protoOff = 20  // offsetof(struct sk_reuseport_md, eth_protocol)
		// ETH_P_IPV6 as skb->protocol holds it (big-endian), read as a
		// little-endian word.
		ethIPv6     = 0xdd86
		hdrStartNet = 1 // BPF_HDR_START_NET
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
	load := func(off, n int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, off),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, addrOff),
			asm.Mov.Imm(asm.R4, n),
			asm.Mov.Imm(asm.R5, hdrStartNet),
			asm.FnSkbLoadBytesRelative.Call(),
			asm.JNE.Imm(asm.R0, 0, "drop"),
		}
	}
	// fmix folds r8 through murmur3's finaliser in 32-bit arithmetic, with
	// r9 as scratch (see fmix32).
	fmix := asm.Instructions{
		asm.Mov.Reg32(asm.R9, asm.R8), asm.RSh.Imm32(asm.R9, 16), asm.Xor.Reg32(asm.R8, asm.R9),
		asm.Mul.Imm32(asm.R8, int32(-0x7a143595)), // 0x85ebca6b
		asm.Mov.Reg32(asm.R9, asm.R8), asm.RSh.Imm32(asm.R9, 13), asm.Xor.Reg32(asm.R8, asm.R9),
		asm.Mul.Imm32(asm.R8, int32(-0x3d4d51cb)), // 0xc2b2ae35
		asm.Mov.Reg32(asm.R9, asm.R8), asm.RSh.Imm32(asm.R9, 16), asm.Xor.Reg32(asm.R8, asm.R9),
	}
	word := func(i int16) asm.Instruction { return asm.LoadMem(asm.R9, asm.RFP, addrOff+4*i, asm.Word) }

	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx, kept across the calls
		asm.StoreImm(asm.RFP, keyOff, 0, asm.Word),
	}
	insns = append(insns, lookup(s.active)...)
	insns = append(insns,
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.Mul.Imm(asm.R7, TableSize), // r7: the bank's first entry
		asm.LoadMem(asm.R2, asm.R6, protoOff, asm.Word),
		asm.JEq.Imm(asm.R2, ethIPv6, "v6"),
	)
	// IPv4: the source address is at 12 of the header.
	insns = append(insns, load(12, 4)...)
	insns = append(insns, asm.LoadMem(asm.R8, asm.RFP, addrOff, asm.Word))
	insns = append(insns, fmix...)
	insns = append(insns, asm.Ja.Label("entry"))
	// IPv6: at 8, 16 bytes.
	v6 := load(8, 16)
	v6[0] = v6[0].WithSymbol("v6")
	insns = append(insns, v6...)
	insns = append(insns, asm.LoadMem(asm.R8, asm.RFP, addrOff, asm.Word))
	insns = append(insns, fmix...)
	for i := int16(1); i < 4; i++ {
		insns = append(insns, word(i), asm.Xor.Reg32(asm.R8, asm.R9))
		insns = append(insns, fmix...)
	}
	insns = append(insns,
		asm.And.Imm(asm.R8, TableSize-1).WithSymbol("entry"),
		asm.Add.Reg(asm.R8, asm.R7),
		asm.StoreMem(asm.RFP, keyOff, asm.R8, asm.Word),
	)
	insns = append(insns, lookup(s.sticky)...)
	insns = append(insns, selectKey(s.sockets, sockOff)...)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "hc_select_stky", Type: ebpf.SkReuseport, Instructions: insns})
	if err != nil {
		return fmt.Errorf("reuseport: load the sticky SK_REUSEPORT program: %w", err)
	}
	s.prog = prog
	return nil
}
