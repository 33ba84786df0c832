package reuseport

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sigmas bounds the tests of the table below: under the model the table
// stands for (each entry's slot an independent uniform choice), a count
// off its mean by more than 5 standard deviations has a probability under
// 6e-7. The table is deterministic, so a failure is not bad luck: it
// would mean the weights are not mixing.
const sigmas = 5

// Growing from N to N+1 slots moves about TableSize/(N+1) entries, every
// one of them to the new slot; removing a slot moves only its own.
func TestStickyTableMovement(t *testing.T) {
	t.Parallel()
	for n := 1; n < MaxSlots; n++ {
		before := StickyTable(upTo(n))
		after := StickyTable(upTo(n + 1))
		moved := 0
		for e := range before {
			if before[e] != after[e] {
				moved++
				if after[e] != n {
					t.Fatalf("%d -> %d slots: entry %d moved from slot %d to %d, not to the new slot", n, n+1, e, before[e], after[e])
				}
			}
		}
		p := 1 / float64(n+1)
		mean, sd := TableSize*p, math.Sqrt(TableSize*p*(1-p))
		if math.Abs(float64(moved)-mean) > sigmas*sd {
			t.Errorf("%d -> %d slots: %d of %d entries moved, want %.0f ± %.0f", n, n+1, moved, TableSize, mean, sigmas*sd)
		}
	}
	// Slot 2 of 0..5 leaves (its worker is down): only its entries move.
	all := StickyTable(upTo(6))
	without := StickyTable([]int{0, 1, 3, 4, 5})
	for e := range all {
		if all[e] != 2 && without[e] != all[e] {
			t.Fatalf("slot 2 left: entry %d moved from slot %d to %d", e, all[e], without[e])
		}
		if without[e] == 2 {
			t.Fatalf("slot 2 left: entry %d still names it", e)
		}
	}
	// Order does not matter.
	if StickyTable([]int{5, 3, 1, 0, 4}) != without {
		t.Error("the table depends on the order of the slots")
	}
}

// Each slot gets about TableSize/N entries.
func TestStickyTableBalance(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 3, 4, 8, 16, 64} {
		counts := make([]int, n)
		for _, slot := range StickyTable(upTo(n)) {
			counts[slot]++
		}
		p := 1 / float64(n)
		mean, sd := TableSize*p, math.Sqrt(TableSize*p*(1-p))
		for slot, c := range counts {
			if math.Abs(float64(c)-mean) > sigmas*sd {
				t.Errorf("%d slots: slot %d has %d entries, want %.0f ± %.0f (all: %v)", n, slot, c, mean, sigmas*sd, counts)
			}
		}
	}
}

func TestSourceHash(t *testing.T) {
	t.Parallel()
	v4 := netip.MustParseAddr("192.0.2.7")
	if SourceHash(v4) != SourceHash(netip.MustParseAddr("::ffff:192.0.2.7")) {
		t.Error("an IPv4-mapped address hashes otherwise than its IPv4 address")
	}
	// Loopback addresses differ in one byte: they must still spread.
	entries := map[uint32]bool{}
	for i := 2; i <= 40; i++ {
		entries[SourceHash(netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))%TableSize] = true
	}
	if len(entries) < 35 {
		t.Errorf("127.0.0.2-40 hash to %d distinct entries of %d, want nearly 39", len(entries), TableSize)
	}
}

func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// groupOn is group for another network (tcp6).
func groupOn(t *testing.T, sel *Selector, network, addr string, n int) []*net.TCPListener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	lc.SetMultipathTCP(false)
	var lns []*net.TCPListener
	for i := 0; i < n; i++ {
		ln, err := lc.Listen(context.Background(), network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		lns = append(lns, ln.(*net.TCPListener))
		addr = ln.Addr().String()
		if i == 0 {
			if err := sel.Attach(fdOf(t, lns[0])); err != nil {
				t.Fatal(err)
			}
		}
	}
	return lns
}

// acceptedBy dials addr from source address from and returns which of lns
// accepted the connection.
func acceptedBy(t *testing.T, from netip.Addr, addr string, lns []*net.TCPListener) int {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for j, ln := range lns {
			ln.SetDeadline(time.Now().Add(time.Millisecond))
			if a, err := ln.Accept(); err == nil {
				found := a.RemoteAddr().String() == c.LocalAddr().String()
				a.Close()
				if found {
					return j
				}
			}
		}
	}
	t.Fatalf("connection from %s: no listener accepted it", from)
	return -1
}

// The sticky program sends every connection of a source address to the
// socket that StickyTable and SourceHash give it, IPv4 and IPv6; steered
// to another generation's sockets, to the same slot's (also with the slots
// spread over two generations, as a rollout would); and a master that
// inherits the maps keeps it so. With the hash program the same clients
// spread over the slots, whatever their address.
func TestStickySteers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		network, addr string
		from          []netip.Addr
	}{
		{"tcp4", "127.0.0.1:0", loopbacks(2, 40)},
		{"tcp6", "[::1]:0", []netip.Addr{netip.IPv6Loopback()}},
	} {
		t.Run(tc.network, func(t *testing.T) {
			t.Parallel()
			s := newBalanced(t, Sticky)
			lns := groupOn(t, s, tc.network, tc.addr, 8)
			if tc.network == "tcp6" && lns[0].Addr().(*net.TCPAddr).IP.To4() != nil {
				t.Skip("no IPv6 loopback here")
			}
			addr := lns[0].Addr().String()
			// Sockets 0-3 are slots 0-3 of generation key 0, 4-7 those
			// of key 1.
			gen := func(k int) []int {
				keys := make([]int, 4)
				for slot := range keys {
					keys[slot] = SlotKey(k, slot)
					if err := s.Set(keys[slot], fdOf(t, lns[4*k+slot])); err != nil {
						t.Fatal(err)
					}
				}
				return keys
			}
			keys0, keys1 := gen(0), gen(1)
			table := StickyTable(upTo(4))
			want := func(a netip.Addr) int { return table[SourceHash(a)%TableSize] }
			check := func(sel string, k int) {
				t.Helper()
				for _, a := range tc.from {
					for i := 0; i < 4; i++ { // each from another source port
						if got := acceptedBy(t, a, addr, lns); got != 4*k+want(a) {
							t.Fatalf("%s: connection %d from %s accepted by socket %d (slot %d of key %d), want slot %d of key %d",
								sel, i, a, got, got%4, got/4, want(a), k)
						}
					}
				}
			}
			if err := s.SteerSlots(keys0); err != nil {
				t.Fatal(err)
			}
			check("sticky", 0)
			if err := s.SteerSlots(keys1); err != nil {
				t.Fatal(err)
			}
			check("sticky, next generation", 1)
			// Half way through a rollout: slots 0 and 2 on key 0's
			// sockets, 1 and 3 on key 1's. Each address keeps its slot.
			mixed := []int{keys0[0], keys1[1], keys0[2], keys1[3]}
			if err := s.SteerSlots(mixed); err != nil {
				t.Fatal(err)
			}
			for _, a := range tc.from {
				slot := want(a)
				if got := acceptedBy(t, a, addr, lns); got != 4*(slot%2)+slot {
					t.Fatalf("mixed generations: %s accepted by socket %d, want slot %d of key %d", a, got, slot, slot%2)
				}
			}

			maps, err := s.Files()
			if err != nil {
				t.Fatal(err)
			}
			defer maps.Close()
			in, err := Inherit(maps, Sticky)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			if err := in.SteerSlots(keys0); err != nil {
				t.Fatal(err)
			}
			if err := in.Attach(fdOf(t, lns[0])); err != nil {
				t.Fatal(err)
			}
			check("inherited", 0)
			if _, err := Inherit(Maps{Sockets: maps.Sockets, Active: maps.Active}, Sticky); err == nil {
				t.Error("Inherit made a sticky selector over maps without a slot table")
			}

			// The flow hash instead: 4 connections each from a few
			// addresses land on more than one slot.
			h, err := Inherit(Maps{Sockets: maps.Sockets, Active: maps.Active, Slots: maps.Slots}, Hash)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if err := h.SteerSlots(keys0); err != nil {
				t.Fatal(err)
			}
			if err := h.Attach(fdOf(t, lns[0])); err != nil {
				t.Fatal(err)
			}
			spread := 0
			for _, a := range tc.from[:min(len(tc.from), 5)] {
				seen := map[int]bool{}
				for i := 0; i < 16; i++ {
					seen[acceptedBy(t, a, addr, lns)] = true
				}
				if len(seen) > 1 {
					spread++
				}
			}
			// 16 connections of one address on one of 4 slots by a
			// uniform hash: probability 4^-15 per address.
			if spread == 0 {
				t.Error("with the flow hash, every address kept to one socket: the check above proves nothing")
			}
		})
	}
}

func loopbacks(first, last int) []netip.Addr {
	var out []netip.Addr
	for i := first; i <= last; i++ {
		out = append(out, netip.MustParseAddr(fmt.Sprintf("127.0.0.%d", i)))
	}
	return out
}

// The cost of a steer (a reload's or a scaling's map writes): the slot
// table alone, or with the sticky table's 4096 entries.
func BenchmarkSteerSlots(b *testing.B) {
	for _, bal := range []Balance{Hash, Sticky} {
		b.Run(bal.String(), func(b *testing.B) {
			s, err := New(bal)
			if err != nil {
				b.Skipf("needs CAP_BPF: %v", err)
			}
			defer s.Close()
			lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
				return serr
			}}
			lc.SetMultipathTCP(false)
			addr := "127.0.0.1:0"
			var keys []int
			for slot := 0; slot < 8; slot++ {
				ln, err := lc.Listen(context.Background(), "tcp4", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				addr = ln.Addr().String()
				rc, _ := ln.(*net.TCPListener).SyscallConn()
				rc.Control(func(fd uintptr) { err = s.Set(SlotKey(0, slot), int(fd)) })
				if err != nil {
					b.Fatal(err)
				}
				keys = append(keys, SlotKey(0, slot))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.SteerSlots(keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStickyTable(b *testing.B) {
	for i := 0; i < b.N; i++ {
		StickyTable(upTo(8))
	}
}
