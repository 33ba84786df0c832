package handoff

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func openTCP(t *testing.T, shared bool) *Sockets {
	t.Helper()
	spec, err := ParseSpec("web=127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Specs: []Spec{spec}, Shared: shared, QuietTimeout: 30 * time.Second, Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(true) })
	return s
}

// genListener is what a worker of generation gen would get on fd 3.
func genListener(t *testing.T, s *Sockets, gen uint64) *net.TCPListener {
	t.Helper()
	files, err := s.Files(gen, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("Files(%d) returned %d files, want 1", gen, len(files))
	}
	assertNonblock(t, files[0])
	ln, err := net.FileListener(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func assertNonblock(t *testing.T, f *os.File) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fl int
	rc.Control(func(fd uintptr) { fl, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		t.Errorf("%s: O_NONBLOCK is off", f.Name())
	}
}

// served dials the listeners' address and reports which of lns accepted.
func served(t *testing.T, addr string, lns ...*net.TCPListener) int {
	t.Helper()
	return servedFrom(t, nil, addr, lns)
}

// slotUDPConns returns the sockets of generation gen's slots 0 to n-1 of
// s's first listener, as its workers get them.
func slotUDPConns(t *testing.T, s *Sockets, gen uint64, n int) []*net.UDPConn {
	t.Helper()
	var out []*net.UDPConn
	for slot := 0; slot < n; slot++ {
		files, err := s.Files(gen, slot)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.FilePacketConn(files[0])
		files[0].Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c.(*net.UDPConn))
	}
	return out
}

func TestSteeredHandoffMovesNewConnections(t *testing.T) {
	t.Parallel()
	s := openTCP(t, false)
	l := s.Listeners()[0]
	if l.Mode != Steered {
		t.Fatalf("mode %v (%s), want steered", l.Mode, l.Why)
	}
	g1 := genListener(t, s, 1)
	if err := s.Activate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	g2 := genListener(t, s, 2)
	for i := 0; i < 20; i++ {
		if got := served(t, l.Addr, g1, g2); got != 0 {
			t.Fatalf("connection %d went to gen 2 before it was activated", i)
		}
	}
	if err := s.Activate(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if got := served(t, l.Addr, g1, g2); got != 1 {
			t.Fatalf("connection %d went to gen 1 after gen 2 was activated", i)
		}
	}
	// Gen 1 still drains: gen 3 needs a third socket.
	g3 := genListener(t, s, 3)
	if err := s.Activate(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if got := served(t, l.Addr, g1, g2, g3); got != 2 {
		t.Fatalf("connection went to socket %d, want gen 3's", got)
	}
	// Once gen 1 is gone its socket is reused, and the master kept every
	// socket open and non-blocking.
	s.Release(1)
	s.Release(2)
	g4 := genListener(t, s, 4)
	if err := s.Activate(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	if got := served(t, l.Addr, g1, g3, g4); got != 0 && got != 2 {
		t.Fatalf("connection went to gen 3's socket after gen 4 was activated")
	}
	s.mu.Lock()
	n := len(s.ls[0].socks)
	for _, so := range s.ls[0].socks {
		f, err := dupFile(so.rc, "master")
		if err != nil {
			t.Fatal(err)
		}
		assertNonblock(t, f)
		f.Close()
	}
	sel := s.ls[0].sel.kind()
	s.mu.Unlock()
	want := 3 // eBPF groups grow on demand
	if sel == "cbpf" {
		want = GroupSize
	}
	if n != want {
		t.Errorf("%s group has %d sockets, want %d", sel, n, want)
	}
}

func TestActivateWaitsForQueuedAndUnreadConnections(t *testing.T) {
	t.Parallel()
	s := openTCP(t, false)
	addr := s.Listeners()[0].Addr
	g1 := genListener(t, s, 1)
	if err := s.Activate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	g2 := genListener(t, s, 2)

	// queued waits in gen 1's accept queue; unread is accepted by gen 1 but
	// its request bytes are not read yet.
	unread, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer unread.Close()
	a1, err := g1.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Close()
	queued, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()
	if _, err := io.WriteString(unread, "GET"); err != nil {
		t.Fatal(err)
	}

	var handled atomic.Int32
	done := make(chan error, 1)
	go func() {
		err := s.Activate(context.Background(), 2)
		if handled.Load() != 2 {
			t.Errorf("Activate returned after %d of 2 connections were served", handled.Load())
		}
		done <- err
	}()
	buf := make([]byte, 3)
	handled.Add(1)
	if _, err := io.ReadFull(a1, buf); err != nil {
		t.Fatal(err)
	}
	handled.Add(1)
	a2, err := g1.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a2.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, g1, g2); got != 1 {
		t.Fatal("a connection after Activate went to gen 1")
	}
}

func TestSharedModes(t *testing.T) {
	t.Parallel()
	s := openTCP(t, true)
	if l := s.Listeners()[0]; l.Mode != Shared || !strings.Contains(l.Why, "--handoff shared") {
		t.Fatalf("listener %+v, want shared by --handoff", l)
	}
	g1 := genListener(t, s, 1)
	g2 := genListener(t, s, 2)
	if err := s.Activate(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if got := served(t, s.Listeners()[0].Addr, g1, g2); got < 0 {
		t.Fatal("not served")
	}

	path := filepath.Join(t.TempDir(), "app.sock")
	spec, _ := ParseSpec("unix://" + path)
	u, err := Open(Config{Specs: []Spec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	if l := u.Listeners()[0]; l.Mode != Shared || l.Why != "unix socket" {
		t.Fatalf("listener %+v, want shared unix socket", l)
	}
	files, err := u.Files(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	// A worker closing its copy must not remove the file.
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket file gone after a worker closed its copy: %v", err)
	}
	u.Close(true)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file still there after the master closed for good: %v", err)
	}
}

func TestOpenErrorsNameTheAddress(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:" + strings.Split(busy.Addr().String(), ":")[1], fmt.Sprintf("in use by pid %d (", os.Getpid())},
		{"unix:///nonexistent-dir/x/app.sock", "does the socket's directory exist"},
		{"192.0.2.1:0", "not on any interface"},
	} {
		spec, err := ParseSpec(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Specs: []Spec{spec}})
		if err == nil {
			s.Close(true)
			t.Errorf("Open(%s) succeeded", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), spec.String()) {
			t.Errorf("Open(%s) = %v; want it to name the address and say %q", tc.in, err, tc.want)
		}
	}
}

func TestPreviousRoundTrip(t *testing.T) {
	t.Parallel()
	for _, p := range []Previous{{}, {Active: 2, Held: []int{0, 2, 3}}} {
		got, err := ParsePrevious(p.String())
		if err != nil || got.Active != p.Active || len(got.Held) != len(p.Held) {
			t.Errorf("%+v -> %q -> %+v, %v", p, p.String(), got, err)
		}
	}
	if _, err := ParsePrevious("active=x"); err == nil {
		t.Error("a bad index was read")
	}
	if got, err := ParsePrevious("active=1;future=9"); err != nil || got.Active != 1 {
		t.Errorf("an unknown key: %+v, %v", got, err)
	}
}

// slotListener is what the worker in slot of generation gen gets on fd 3.
func slotListener(t *testing.T, s *Sockets, gen uint64, slot int) *net.TCPListener {
	t.Helper()
	files, err := s.Files(gen, slot)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// With an eBPF selector each slot of a generation has a socket of its own,
// the generation's connections are spread over its slots' sockets, an
// activation moves them all to the next generation's, and Serve narrows a
// generation to its first slots.
func TestSocketPerSlot(t *testing.T) {
	s := openTCP(t, false)
	if l := s.Listeners()[0]; l.Selector != "ebpf" {
		t.Skipf("sockets per slot need the eBPF selector (root, CAP_BPF): %s", l.Why)
	}
	addr := s.Listeners()[0].Addr
	var g1, g2 []*net.TCPListener
	for slot := 0; slot < 4; slot++ {
		g1 = append(g1, slotListener(t, s, 1, slot))
	}
	ino := map[uint64]bool{}
	for slot := 0; slot < 4; slot++ {
		ino[s.Inodes(1, slot)[0]] = true
	}
	if len(ino) != 4 || ino[0] {
		t.Fatalf("inodes of the 4 slots: %v, want 4 distinct sockets", ino)
	}
	count := func(n int, lns []*net.TCPListener) []int {
		got := make([]int, len(lns))
		for i := 0; i < n; i++ {
			j := served(t, addr, lns...)
			if j < 0 {
				t.Fatalf("connection %d: none of %d sockets accepted it", i, len(lns))
			}
			got[j]++
		}
		return got
	}
	all := append([]*net.TCPListener{}, g1...)
	got := count(200, all)
	for _, n := range got {
		if n < 15 { // 200 by a uniform hash over 4: under 15 has p < 1e-9
			t.Fatalf("gen 1's connections per slot: %v, want each slot some 50", got)
		}
	}
	for slot := 0; slot < 2; slot++ {
		g2 = append(g2, slotListener(t, s, 2, slot))
	}
	if err := s.Activate(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	all = append(append([]*net.TCPListener{}, g2...), g1...)
	got = count(80, all)
	if got[0] == 0 || got[1] == 0 || got[0]+got[1] != 80 {
		t.Fatalf("after activating gen 2 (2 slots): per socket (gen 2's, then gen 1's) %v", got)
	}
	if err := s.Serve(2, []int{0}); err != nil {
		t.Fatal(err)
	}
	if got = count(20, all); got[0] != 20 {
		t.Fatalf("gen 2 narrowed to 1 slot: per socket %v, want all on slot 0", got)
	}
	// Files (a respawn, scaling up) gives slot 1 its share back.
	slotListener(t, s, 2, 1)
	if got = count(80, all); got[1] == 0 || got[0]+got[1] != 80 {
		t.Fatalf("gen 2 widened to 2 slots: per socket %v", got)
	}
	// Leaving out slot 0 (its worker crashed) sends everything to slot 1.
	if err := s.Serve(2, []int{1}); err != nil {
		t.Fatal(err)
	}
	if got = count(20, all); got[1] != 20 {
		t.Fatalf("gen 2 without slot 0: per socket %v, want all on slot 1", got)
	}
}

// UDP: each slot has a socket too; a flow (source address and port) keeps
// its slot while the table stays, flows spread over the slots, and after
// Activate a flow's later datagrams go to the new generation.
func TestSocketPerSlotUDP(t *testing.T) {
	spec, err := ParseSpec("dns=udp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Specs: []Spec{spec}, QuietTimeout: 5 * time.Second, Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(true) })
	if l := s.Listeners()[0]; l.Selector != "ebpf" {
		t.Skipf("sockets per slot need the eBPF selector (root, CAP_BPF): %s", l.Why)
	}
	addr, err := net.ResolveUDPAddr("udp", s.Listeners()[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	conns := func(gen uint64, n int) []*net.UDPConn { return slotUDPConns(t, s, gen, n) }
	// which sends one datagram from c and says which of socks got it.
	which := func(c *net.UDPConn, socks []*net.UDPConn) int {
		t.Helper()
		if _, err := c.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			for i, so := range socks {
				so.SetReadDeadline(time.Now().Add(time.Millisecond))
				var b [8]byte
				if _, from, err := so.ReadFromUDP(b[:]); err == nil && from.String() == c.LocalAddr().String() {
					return i
				}
			}
		}
		t.Fatalf("datagram from %s: no socket got it", c.LocalAddr())
		return -1
	}
	g1 := conns(1, 2)
	var clients []*net.UDPConn
	for range 40 {
		c, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	per := make([]int, 2)
	first := make([]int, len(clients))
	for i, c := range clients {
		first[i] = which(c, g1)
		per[first[i]]++
	}
	// 40 flows over 2 sockets by a uniform hash: fewer than 5 on one has a
	// probability under 1e-6.
	if per[0] < 5 || per[1] < 5 {
		t.Fatalf("flows per slot %v, want both slots to have some 20", per)
	}
	for i, c := range clients {
		if got := which(c, g1); got != first[i] {
			t.Fatalf("flow %d moved from slot %d to %d with the table unchanged", i, first[i], got)
		}
	}
	g2 := conns(2, 2)
	if err := s.Activate(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	all := append(append([]*net.UDPConn{}, g2...), g1...)
	for i, c := range clients {
		if got := which(c, all); got > 1 {
			t.Fatalf("flow %d after activating gen 2: on gen 1's slot %d", i, got-2)
		}
	}
}

// Slots past SlotSockets share a socket with an earlier slot: a pool of
// more workers than the slot table holds still starts.
func TestSlotsPastTheTableShareASocket(t *testing.T) {
	s := openTCP(t, false)
	if l := s.Listeners()[0]; l.Selector != "ebpf" {
		t.Skipf("sockets per slot need the eBPF selector (root, CAP_BPF): %s", l.Why)
	}
	for slot := 0; slot < SlotSockets+2; slot++ {
		files, err := s.Files(1, slot)
		if err != nil {
			t.Fatalf("slot %d: %v", slot, err)
		}
		closeAll(files)
	}
	if a, b := s.Inodes(1, 1)[0], s.Inodes(1, SlotSockets+1)[0]; a != b || a == 0 {
		t.Errorf("slots 1 and %d: sockets %d and %d, want the same", SlotSockets+1, a, b)
	}
	if a, b := s.Inodes(1, 1)[0], s.Inodes(1, 2)[0]; a == b {
		t.Errorf("slots 1 and 2 share socket %d", a)
	}
	if err := s.Serve(1, []int{0, SlotSockets + 1}); err != nil {
		t.Fatal(err)
	}
	lns := []*net.TCPListener{slotListener(t, s, 1, 0), slotListener(t, s, 1, 1)}
	for i := 0; i < 20; i++ {
		if j := served(t, s.Listeners()[0].Addr, lns...); j < 0 {
			t.Fatalf("connection %d not served by slots 0 and 1", i)
		}
	}
}
