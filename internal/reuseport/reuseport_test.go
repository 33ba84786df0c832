package reuseport

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// group is n listening sockets of one SO_REUSEPORT group on a fresh port
// of 127.0.0.1, the first with sel attached before the others join.
func group(t *testing.T, sel *Selector, addr string, n int) []*net.TCPListener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	lc.SetMultipathTCP(false)
	var lns []*net.TCPListener
	for i := 0; i < n; i++ {
		ln, err := lc.Listen(context.Background(), "tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		lns = append(lns, ln.(*net.TCPListener))
		addr = ln.Addr().String()
		if i == 0 && sel != nil {
			if err := sel.Attach(fdOf(t, lns[0])); err != nil {
				t.Fatal(err)
			}
		}
	}
	return lns
}

func fdOf(t *testing.T, ln *net.TCPListener) int {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var nfd int
	rc.Control(func(fd uintptr) { nfd = int(fd) })
	return nfd
}

func cookie(t *testing.T, ln *net.TCPListener) uint64 {
	t.Helper()
	c, err := unix.GetsockoptUint64(fdOf(t, ln), unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// served dials addr n times and counts which listener accepted each.
func served(t *testing.T, addr string, n int, lns ...*net.TCPListener) []int {
	t.Helper()
	counts := make([]int, len(lns))
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		found := false
		deadline := time.Now().Add(5 * time.Second)
		for !found && time.Now().Before(deadline) {
			for j, ln := range lns {
				ln.SetDeadline(time.Now().Add(time.Millisecond))
				if a, err := ln.Accept(); err == nil {
					found = a.RemoteAddr().String() == c.LocalAddr().String()
					a.Close()
					if found {
						counts[j]++
						break
					}
				}
			}
		}
		c.Close()
		if !found {
			t.Fatalf("connection %d: no listener accepted it", i)
		}
	}
	return counts
}

func newSelector(t *testing.T) *Selector { return newBalanced(t, Hash) }

func newBalanced(t *testing.T, b Balance) *Selector {
	t.Helper()
	s, err := New(b)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("needs root (CAP_BPF) to load SK_REUSEPORT programs: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// A socket that joins the group without being stored in the map gets no
// connection, whichever key is active; a stored one gets them all.
func TestSelectsByIdentity(t *testing.T) {
	t.Parallel()
	s := newSelector(t)
	lns := group(t, s, "127.0.0.1:0", 3) // 0 and 1 are ours, 2 a stranger
	addr := lns[0].Addr().String()
	for k := 0; k < 2; k++ {
		if err := s.Set(k, fdOf(t, lns[k])); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []int{0, 1, 0} {
		if err := s.Steer(k); err != nil {
			t.Fatal(err)
		}
		got := served(t, addr, 20, lns...)
		if got[k] != 20 {
			t.Fatalf("steered to %d: connections per socket %v, want all 20 on socket %d", k, got, k)
		}
	}
	if ok, err := s.Holds(1, cookie(t, lns[1])); err != nil || !ok {
		t.Errorf("Holds(1, cookie of socket 1) = %v, %v", ok, err)
	}
	if ok, err := s.Holds(1, cookie(t, lns[0])); err != nil || ok {
		t.Errorf("Holds(1, cookie of socket 0) = %v, %v; want false", ok, err)
	}
	if ok, err := s.Holds(5, 1); err != nil || ok {
		t.Errorf("Holds on an empty key = %v, %v; want false", ok, err)
	}
	// A socket cannot be in two maps: the kernel says EBUSY.
	other := newSelector(t)
	if err := other.Set(0, fdOf(t, lns[0])); !errors.Is(err, unix.EBUSY) {
		t.Errorf("storing a socket in a second map: %v, want EBUSY", err)
	}
	// An empty active key refuses the connection, rather than hashing it
	// over the group (which would reach the stranger).
	if err := s.Steer(7); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if !errors.Is(err, unix.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial with an empty active key: %v, want connection refused", err)
	}
	if err := s.Set(MaxSockets*MaxSlots, fdOf(t, lns[2])); err == nil {
		t.Errorf("Set(%d) succeeded past the map's size", MaxSockets*MaxSlots)
	}
}

// SteerSlots spreads connections by flow hash over the sockets it names,
// and over no other: not over a stored socket left out, nor a stranger.
func TestSteerSlots(t *testing.T) {
	t.Parallel()
	s := newSelector(t)
	lns := group(t, s, "127.0.0.1:0", 6) // 0..4 are ours, 5 a stranger
	addr := lns[0].Addr().String()
	keys := []int{SlotKey(0, 0), SlotKey(0, 1), SlotKey(0, 2), SlotKey(0, 3), SlotKey(1, 0)}
	for i, k := range keys {
		if err := s.Set(k, fdOf(t, lns[i])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SteerSlots(keys[:4]); err != nil {
		t.Fatal(err)
	}
	got := served(t, addr, 400, lns...)
	for i := 0; i < 4; i++ {
		// 400 connections over 4 sockets by a uniform hash: below 40 on one
		// has a probability under 1e-9.
		if got[i] < 40 {
			t.Errorf("4 slots: connections per socket %v, want each of the first 4 to have some 100", got)
			break
		}
	}
	if got[4]+got[5] != 0 {
		t.Errorf("4 slots: connections per socket %v, want none on sockets 4 and 5", got)
	}
	// Another table, then back: the banks alternate.
	for _, want := range [][]int{{1, 3}, {4}, {0, 1, 2, 3}} {
		ks := make([]int, len(want))
		for i, j := range want {
			ks[i] = keys[j]
		}
		if err := s.SteerSlots(ks); err != nil {
			t.Fatal(err)
		}
		got := served(t, addr, 40, lns...)
		sum := 0
		for _, j := range want {
			sum += got[j]
		}
		if sum != 40 {
			t.Errorf("steered to sockets %v: connections per socket %v", want, got)
		}
	}
}

// The maps cross to an inheriting selector, whose own program then steers
// the same group through them.
func TestInherit(t *testing.T) {
	t.Parallel()
	s := newSelector(t)
	lns := group(t, s, "127.0.0.1:0", 3)
	addr := lns[0].Addr().String()
	for k := 0; k < 2; k++ {
		if err := s.Set(k, fdOf(t, lns[k])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Steer(1); err != nil {
		t.Fatal(err)
	}
	maps, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	s.Close() // the old master's references are gone; the group holds its program

	in, err := Inherit(maps, Hash)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if got := served(t, addr, 10, lns...); got[1] != 10 {
		t.Fatalf("after the old selector closed: %v, want all on socket 1", got)
	}
	if ok, err := in.Holds(0, cookie(t, lns[0])); err != nil || !ok {
		t.Errorf("inherited map does not hold socket 0: %v, %v", ok, err)
	}
	if err := in.Attach(fdOf(t, lns[0])); err != nil {
		t.Fatal(err)
	}
	if err := in.Steer(0); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, 10, lns...); got[0] != 10 {
		t.Fatalf("steered by the inheriting selector: %v, want all on socket 0", got)
	}

	// Maps from a master before slot tables (no slot map): the program
	// that selects the active key alone steers the same group.
	old, err := Inherit(Maps{Sockets: maps.Sockets, Active: maps.Active}, Hash)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if old.Slotted() {
		t.Fatal("a selector without a slot map says it has a slot table")
	}
	if err := old.Attach(fdOf(t, lns[0])); err != nil {
		t.Fatal(err)
	}
	if err := old.Steer(1); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, 10, lns...); got[1] != 10 {
		t.Fatalf("steered by the single-key program: %v, want all on socket 1", got)
	}

	// Maps of another kind are refused.
	wrong := newSelector(t)
	wm, err := wrong.Files()
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()
	if sel, err := Inherit(Maps{Sockets: wm.Active, Active: wm.Active}, Hash); err == nil {
		sel.Close()
		t.Error("Inherit took an array map for the socket map")
	}
}
