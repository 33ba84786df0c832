package handoff

import (
	"context"
	"errors"
	"net"
	"testing"
)

// A rolling reload: Move hands a batch of slots at a time to the next
// generation (the other slots stay where they are), back as well, and the
// last batch makes the new generation the active one.
func TestMoveSlotsBetweenGenerations(t *testing.T) {
	s := openTCP(t, false)
	if l := s.Listeners()[0]; l.Selector != "ebpf" {
		t.Skipf("sockets per slot need the eBPF selector (root, CAP_BPF): %s", l.Why)
	}
	addr := s.Listeners()[0].Addr
	var g1, g2 []*net.TCPListener
	for slot := 0; slot < 4; slot++ {
		g1 = append(g1, slotListener(t, s, 1, slot))
	}
	if err := s.Activate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	for slot := 0; slot < 4; slot++ {
		g2 = append(g2, slotListener(t, s, 2, slot))
	}
	all := append(append([]*net.TCPListener{}, g1...), g2...) // 0-3 gen 1, 4-7 gen 2
	count := func(n int) []int {
		got := make([]int, len(all))
		for i := 0; i < n; i++ {
			got[served(t, addr, all...)]++
		}
		return got
	}
	// want reports whether only the sockets in on got connections, and
	// each of them some (200 over 4 slots: fewer than 15 has p < 1e-9).
	want := func(step string, got []int, on ...int) {
		t.Helper()
		for i, n := range got {
			onIt := false
			for _, j := range on {
				onIt = onIt || i == j
			}
			if onIt && n < 15 || !onIt && n != 0 {
				t.Fatalf("%s: connections per socket (gen 1's slots 0-3, gen 2's 0-3) %v, want some on each of %v only", step, got, on)
			}
		}
	}
	want("gen 1 serves", count(200), 0, 1, 2, 3)
	if err := s.Move(context.Background(), 2, []int{0}); err != nil {
		t.Fatal(err)
	}
	want("slot 0 moved to gen 2", count(200), 4, 1, 2, 3)
	if err := s.Move(context.Background(), 2, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	want("slots 0-2 moved", count(200), 4, 5, 6, 3)
	// Back: the rollout failed; slot 2 returns to gen 1 first.
	if err := s.Move(context.Background(), 1, []int{2}); err != nil {
		t.Fatal(err)
	}
	want("slot 2 moved back", count(200), 4, 5, 2, 3)
	if err := s.Move(context.Background(), 2, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	want("every slot on gen 2", count(200), 4, 5, 6, 7)
	s.mu.Lock()
	active, moved := s.active, len(s.moved)
	s.mu.Unlock()
	if active != s.holders[2] || moved != 0 {
		t.Fatalf("after the last batch: active index %d (gen 2 holds %d), %d slots still moved; want gen 2 active", active, s.holders[2], moved)
	}
	// Gen 1 is gone: its sockets get nothing, and gen 2 is whole.
	s.Release(1)
	want("gen 1 released", count(200), 4, 5, 6, 7)
}

// Without a socket per slot (classic BPF) traffic cannot move a slot at a
// time: Move says so.
func TestMoveNeedsSlotSockets(t *testing.T) {
	spec, err := ParseSpec("web=127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Specs: []Spec{spec}, classic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(true)
	genListener(t, s, 1)
	genListener(t, s, 2)
	if err := s.Move(context.Background(), 2, []int{0}); !errors.Is(err, ErrNoSlots) {
		t.Fatalf("Move with classic BPF: %v, want ErrNoSlots", err)
	}
}
