package sockdiag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pollTimeout bounds every wait for the kernel to catch up with what the
// test did (a handshake's last ACK, data on loopback).
const pollTimeout = 10 * time.Second

// listen binds like package handoff does: Multipath TCP off, because since
// Go 1.24 net.Listen makes MPTCP sockets, whose TCP subflows hide unread
// data from the TCP-level counters this package reads.
func listen(t *testing.T, network, addr string) *net.TCPListener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		if network == "tcp6" {
			t.Skipf("cannot bind %s, so the host has no usable IPv6 loopback: %v", addr, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(ln.Addr().Network(), ln.Addr().String(), pollTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func port(a net.Addr) uint16 { return addrPort(a).Port() }

// poll calls check until it returns nil or pollTimeout passes, and fails
// the test with check's last error then.
func poll(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", pollTimeout, err)
		}
		<-tick.C
	}
}

// find returns the socket among conns whose remote address is remote.
func find(conns []Conn, local, remote netip.AddrPort) (Conn, error) {
	var found []Conn
	for _, c := range conns {
		if c.Local == local && c.Remote == remote {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		return Conn{}, fmt.Errorf("%d sockets %v -> %v in %+v, want 1", len(found), local, remote, conns)
	}
	return found[0], nil
}

// fdIdentity returns the inode number and socket cookie of a socket.
func fdIdentity(t *testing.T, sc syscall.Conn) (inode, cookie uint64) {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if serr = unix.Fstat(int(fd), &st); serr != nil {
			return
		}
		inode = st.Ino
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		t.Fatal(err)
	}
	return inode, cookie
}

func TestTCP(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ network, addr string }{
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		t.Run(tt.network, func(t *testing.T) {
			t.Parallel()
			testTCP(t, tt.network, tt.addr)
		})
	}
}

func testTCP(t *testing.T, network, addr string) {
	ln := listen(t, network, addr)
	lnAddr, p := addrPort(ln.Addr()), port(ln.Addr())
	lnRaw, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}

	// A connection on another port, with unread data, that must never show.
	other := listen(t, network, addr)
	otherClient := dial(t, other)
	if _, err := otherClient.Write([]byte("xyz")); err != nil {
		t.Fatal(err)
	}

	clients := []net.Conn{dial(t, ln), dial(t, ln)}
	remotes := []netip.AddrPort{addrPort(clients[0].LocalAddr()), addrPort(clients[1].LocalAddr())}
	established := States(Established)

	// Both handshakes end in the accept queue: no file, nothing received.
	poll(t, func() error {
		conns, err := TCP(p, established)
		if err != nil {
			return err
		}
		if len(conns) != 2 {
			return fmt.Errorf("got %+v, want 2 established sockets", conns)
		}
		for _, r := range remotes {
			c, err := find(conns, lnAddr, r)
			if err != nil {
				return err
			}
			if c.State != Established || c.Inode != 0 || c.RxQueue != 0 || c.Cookie == 0 {
				return fmt.Errorf("queued connection %+v, want ESTABLISHED, inode 0, empty receive queue, a cookie", c)
			}
		}
		return nil
	})
	poll(t, func() error {
		if n, err := ListenQueue(lnRaw); err != nil || n != 2 {
			return fmt.Errorf("ListenQueue = %d, %v; want 2", n, err)
		}
		return nil
	})

	// The listener itself shows only when asked for, with its queue length.
	conns, err := TCP(p, States(Listen))
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 {
		t.Fatalf("TCP(%d, LISTEN) = %+v, want the listener alone", p, conns)
	}
	lnInode, lnCookie := fdIdentity(t, ln)
	want := Conn{
		Local:   lnAddr,
		Remote:  netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
		State:   Listen,
		RxQueue: 2,
		TxQueue: conns[0].TxQueue, // the backlog: somaxconn, whatever it is here
		Inode:   uint32(lnInode),
		Cookie:  lnCookie,
	}
	if lnAddr.Addr().Is4() {
		want.Remote = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	} else {
		want.V6Only = true // Go sets IPV6_V6ONLY on tcp6 sockets
	}
	if conns[0] != want || want.TxQueue == 0 {
		t.Fatalf("TCP(%d, LISTEN) = %+v, want %+v with a nonzero backlog", p, conns[0], want)
	}

	for _, c := range clients {
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	// Data lands in the queued connections before anyone accepts them.
	poll(t, func() error {
		conns, err := TCP(p, established)
		if err != nil {
			return err
		}
		for _, r := range remotes {
			c, err := find(conns, lnAddr, r)
			if err != nil {
				return err
			}
			if c.RxQueue != 5 || c.BytesReceived != 5 || c.Inode != 0 {
				return fmt.Errorf("queued connection %+v, want 5 bytes received and unread, inode 0", c)
			}
		}
		return nil
	})

	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	accepted, waiting := addrPort(server.RemoteAddr()), remotes[0]
	if waiting == accepted {
		waiting = remotes[1]
	}
	inode, cookie := fdIdentity(t, server.(*net.TCPConn))

	conns, err = TCP(p, established)
	if err != nil {
		t.Fatal(err)
	}
	c, err := find(conns, lnAddr, accepted)
	if err != nil {
		t.Fatal(err)
	}
	if c.RxQueue != 5 || uint64(c.Inode) != inode || c.Cookie != cookie {
		t.Errorf("accepted, unread %+v, want RxQueue 5, Inode %d, Cookie %d", c, inode, cookie)
	}
	if c, err := find(conns, lnAddr, waiting); err != nil || c.Inode != 0 || c.RxQueue != 5 {
		t.Errorf("still queued %+v (%v), want inode 0, RxQueue 5", c, err)
	}
	if n, err := ListenQueue(lnRaw); err != nil || n != 1 {
		t.Errorf("ListenQueue after one accept = %d, %v; want 1", n, err)
	}

	if _, err := io.ReadFull(server, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	conns, err = TCP(p, established)
	if err != nil {
		t.Fatal(err)
	}
	c, err = find(conns, lnAddr, accepted)
	if err != nil {
		t.Fatal(err)
	}
	if c.RxQueue != 0 || c.BytesReceived != 5 || c.Cookie != cookie {
		t.Errorf("accepted and read %+v, want RxQueue 0, BytesReceived 5, Cookie %d", c, cookie)
	}

	// Nothing of the other port, which does have a connection to show.
	for _, c := range conns {
		if c.Local.Port() != p || c.Remote == addrPort(otherClient.LocalAddr()) {
			t.Errorf("TCP(%d) lists %+v", p, c)
		}
	}
	otherLocal := addrPort(other.Addr())
	poll(t, func() error {
		conns, err := TCP(port(other.Addr()), established)
		if err != nil {
			return err
		}
		c, err := find(conns, otherLocal, addrPort(otherClient.LocalAddr()))
		if err == nil && c.RxQueue != 3 {
			err = fmt.Errorf("other port's connection %+v, want RxQueue 3", c)
		}
		return err
	})
}

func TestTCPNothingListening(t *testing.T) {
	t.Parallel()
	ln := listen(t, "tcp4", "127.0.0.1:0")
	p := port(ln.Addr())
	ln.Close()
	conns, err := TCP(p, States(Listen, Established, SynRecv))
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 0 {
		t.Errorf("TCP(%d) on a closed port = %+v, want none", p, conns)
	}
}

func TestListenQueueNotListening(t *testing.T) {
	t.Parallel()
	ln := listen(t, "tcp4", "127.0.0.1:0")
	c := dial(t, ln)
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ListenQueue(rc); !errors.Is(err, ErrNotListening) {
		t.Errorf("ListenQueue on a connection = %d, %v; want ErrNotListening", n, err)
	}

	ln.Close()
	rc, err = ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ListenQueue(rc); err == nil {
		t.Errorf("ListenQueue on a closed listener = %d, want an error", n)
	}
}

func BenchmarkTCP(b *testing.B) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	p := port(ln.Addr())
	states := States(Listen, SynRecv, Established, CloseWait)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TCP(p, states); err != nil {
			b.Fatal(err)
		}
	}
}

func TestUDP(t *testing.T) {
	t.Parallel()
	// An unconnected IPv4 socket and, on the same port, a connected IPv6
	// one: both are bound to the port and both must show, each with the
	// inode of its file.
	var lc net.ListenConfig
	lc.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}
	bound, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bound.Close()
	p := bound.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteTo([]byte("12345"), bound.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv6loopback, Port: int(p)}}
	connected, err := d.Dial("udp6", "[::1]:9")
	if err != nil {
		t.Skipf("no usable IPv6 loopback: %v", err)
	}
	defer connected.Close()
	boundInode, _ := fdIdentity(t, bound.(*net.UDPConn))
	connInode, _ := fdIdentity(t, connected.(*net.UDPConn))

	poll(t, func() error {
		conns, err := UDP(p)
		if err != nil {
			return err
		}
		if len(conns) != 2 {
			return fmt.Errorf("UDP(%d) = %+v, want 2 sockets", p, conns)
		}
		for _, c := range conns {
			switch uint64(c.Inode) {
			case boundInode:
				if c.State != Close || c.Local != netip.MustParseAddrPort("127.0.0.1:"+fmt.Sprint(p)) || c.RxQueue == 0 || c.V6Only {
					return fmt.Errorf("bound socket %+v, want CLOSE on 127.0.0.1 with a datagram queued", c)
				}
			case connInode:
				if c.State != Established || c.Remote != netip.MustParseAddrPort("[::1]:9") {
					return fmt.Errorf("connected socket %+v, want ESTABLISHED to [::1]:9", c)
				}
			default:
				return fmt.Errorf("UDP(%d) lists %+v, which is neither socket", p, c)
			}
		}
		return nil
	})
	if conns, err := UDP(peer.LocalAddr().(*net.UDPAddr).AddrPort().Port()); err != nil || len(conns) != 1 {
		t.Errorf("UDP of the peer's port = %+v, %v; want the peer alone", conns, err)
	}
}

func TestListenV6Only(t *testing.T) {
	t.Parallel()
	dual := listen(t, "tcp", "[::]:0")
	p := port(dual.Addr())
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	lc.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1) })
		return serr
	}
	// [::1] is free on that port: the dual-stack socket is bound to [::].
	only, err := lc.Listen(context.Background(), "tcp6", fmt.Sprintf("[::1]:%d", p))
	if err != nil {
		t.Skipf("cannot bind [::1]: %v", err)
	}
	defer only.Close()
	conns, err := TCP(p, States(Listen))
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]bool{}
	for _, c := range conns {
		got[c.Local.Addr()] = c.V6Only
	}
	if v6only, ok := got[netip.IPv6Unspecified()]; !ok || v6only {
		t.Errorf("dual-stack [::]:%d in %+v: want it listed with V6Only false", p, conns)
	}
	if v6only, ok := got[netip.IPv6Loopback()]; !ok || !v6only {
		t.Errorf("[::1]:%d in %+v: want it listed with V6Only true", p, conns)
	}
}
