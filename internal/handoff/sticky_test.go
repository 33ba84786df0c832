package handoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --balance sticky is refused where a listener has no socket per slot:
// shared, or steered by classic BPF; a unix socket (no client address) is
// let be.
func TestStickyRefused(t *testing.T) {
	t.Parallel()
	spec, _ := ParseSpec("web=127.0.0.1:0")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"shared", Config{Shared: true}, "shared (--handoff shared)"},
		{"classic", Config{classic: true}, "steered by cbpf"},
	} {
		tc.cfg.Specs, tc.cfg.Balance = []Spec{spec}, BalanceSticky
		s, err := Open(tc.cfg)
		var se *StickyError
		if !errors.As(err, &se) {
			if s != nil {
				s.Close(true)
			}
			t.Fatalf("%s: Open = %v, want a *StickyError", tc.name, err)
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, "--balance hash") {
			t.Errorf("%s: %q does not say %q and what to do", tc.name, msg, tc.want)
		}
	}
	unix, _ := ParseSpec("app=unix://" + filepath.Join(t.TempDir(), "s"))
	s, err := Open(Config{Specs: []Spec{unix}, Balance: BalanceSticky})
	if err != nil {
		t.Fatalf("sticky with only a unix socket: %v", err)
	}
	s.Close(true)
}

// fromAddrs are the client source addresses of the tests: 127.0.0.2-21.
func fromAddrs() []net.IP {
	var out []net.IP
	for i := 2; i <= 21; i++ {
		out = append(out, net.IPv4(127, 0, 0, byte(i)))
	}
	return out
}

// servedFrom dials addr from source address ip and reports which of lns
// accepted.
func servedFrom(t *testing.T, ip net.IP, addr string, lns []*net.TCPListener) int {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, ln := range lns {
			ln.SetDeadline(time.Now().Add(time.Millisecond))
			if a, err := ln.Accept(); err == nil {
				ok := a.RemoteAddr().String() == c.LocalAddr().String()
				a.Close()
				if ok {
					return i
				}
			}
		}
	}
	t.Fatalf("no listener accepted the connection from %s", c.LocalAddr())
	return -1
}

// With sticky balance each client address keeps to one slot: over many
// connections, after an activation (the slot's socket of the next
// generation) and after an upgrade of the master (the maps cross it).
func TestStickyAcrossActivateAndUpgrade(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	defer st.close()
	spec, _ := ParseSpec("web=127.0.0.1:0")
	s1, err := Open(Config{Specs: []Spec{spec}, Store: st, Balance: BalanceSticky, QuietTimeout: 30 * time.Second, Grace: time.Millisecond})
	if err != nil {
		var se *StickyError
		if errors.As(err, &se) {
			t.Skipf("sticky balance needs the eBPF selector (root, CAP_BPF): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s1.Close(true) })
	if l := s1.Listeners()[0]; !l.Sticky || !l.PerSlot {
		t.Fatalf("listener %+v, want sticky with a socket per slot", l)
	}
	addr := s1.Listeners()[0].Addr
	gen := func(s *Sockets, g uint64) []*net.TCPListener {
		var lns []*net.TCPListener
		for slot := 0; slot < 4; slot++ {
			lns = append(lns, slotListener(t, s, g, slot))
		}
		return lns
	}
	g1 := gen(s1, 1)
	if err := s1.Activate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	slotOf := map[string]int{}
	used := map[int]bool{}
	for _, ip := range fromAddrs() {
		slotOf[ip.String()] = servedFrom(t, ip, addr, g1)
		used[slotOf[ip.String()]] = true
		for i := 0; i < 3; i++ {
			if got := servedFrom(t, ip, addr, g1); got != slotOf[ip.String()] {
				t.Fatalf("%s: connection on slot %d, an earlier one on %d", ip, got, slotOf[ip.String()])
			}
		}
	}
	// 20 addresses over 4 slots: all on at most 2 has a probability of
	// 6 * 2^-20.
	if len(used) < 3 {
		t.Fatalf("20 addresses on slots %v only", used)
	}
	check := func(what string, lns []*net.TCPListener) {
		t.Helper()
		for _, ip := range fromAddrs() {
			if got := servedFrom(t, ip, addr, lns); got != slotOf[ip.String()] {
				t.Fatalf("%s: %s on socket %d, want slot %d (of the first %d sockets)", what, ip, got, slotOf[ip.String()], 4)
			}
		}
	}
	g2 := gen(s1, 2)
	if err := s1.Activate(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	check("gen 2", append(append([]*net.TCPListener{}, g2...), g1...))
	s1.Release(1)

	if err := s1.Persist(); err != nil {
		t.Fatal(err)
	}
	prev := s1.Handover()
	s2, err := Open(Config{Specs: []Spec{spec}, Store: st, Previous: &prev, Balance: BalanceSticky, QuietTimeout: 30 * time.Second, Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(false)
	check("taken over", g2)
	g3 := gen(s2, 3)
	if err := s2.Activate(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	check("gen 3 of the upgraded master", append(append([]*net.TCPListener{}, g3...), g2...))
}

// UDP: every datagram of a client address, from any of its ports, goes to
// the same slot, also after an activation moved the traffic to the next
// generation's sockets.
func TestStickyUDP(t *testing.T) {
	t.Parallel()
	spec, _ := ParseSpec("dns=udp://127.0.0.1:0")
	s, err := Open(Config{Specs: []Spec{spec}, Balance: BalanceSticky, QuietTimeout: 5 * time.Second, Grace: time.Millisecond})
	if err != nil {
		var se *StickyError
		if errors.As(err, &se) {
			t.Skipf("sticky balance needs the eBPF selector (root, CAP_BPF): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(true) })
	addr, err := net.ResolveUDPAddr("udp", s.Listeners()[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	conns := func(gen uint64) []*net.UDPConn { return slotUDPConns(t, s, gen, 4) }
	// which sends a datagram from a new port of ip and says which of
	// socks got it.
	which := func(ip net.IP, socks []*net.UDPConn) int {
		t.Helper()
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: ip}, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := fmt.Sprintf("from %s", c.LocalAddr())
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for i, so := range socks {
				so.SetReadDeadline(time.Now().Add(time.Millisecond))
				var b [64]byte
				if n, _, err := so.ReadFromUDP(b[:]); err == nil && string(b[:n]) == msg {
					return i
				}
			}
		}
		t.Fatalf("datagram from %s: no socket got it", c.LocalAddr())
		return -1
	}
	g1 := conns(1)
	if err := s.Activate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	slotOf := map[string]int{}
	for _, ip := range fromAddrs() {
		slotOf[ip.String()] = which(ip, g1)
		for i := 0; i < 3; i++ {
			if got := which(ip, g1); got != slotOf[ip.String()] {
				t.Fatalf("%s: a datagram on slot %d, an earlier one on %d", ip, got, slotOf[ip.String()])
			}
		}
	}
	g2 := conns(2)
	if err := s.Activate(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	all := append(append([]*net.UDPConn{}, g2...), g1...)
	for _, ip := range fromAddrs() {
		if got := which(ip, all); got != slotOf[ip.String()] {
			t.Fatalf("after activating gen 2: %s on socket %d, want slot %d of gen 2", ip, got, slotOf[ip.String()])
		}
	}
}
