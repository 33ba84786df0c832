package rescue

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair returns both ends of a loopback TCP connection on ip and the
// accepted end's descriptor.
func tcpPair(t *testing.T, ip net.IP) (client, server *net.TCPConn, fd int) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	raw, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(f uintptr) { fd = int(f) })
	return client, server, fd
}

// The filter keeps what the client sends out of the socket while it is
// on, lets the server's answer be acknowledged, and loses nothing: the
// client's kernel sends it again once the filter is off. The filter reads
// the TCP header, the same over IPv4 and IPv6.
func TestHoldBackKeepsDataOutAndLosesNone(t *testing.T) {
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		t.Run(ip.String(), func(t *testing.T) {
			t.Parallel()
			holdBackKeepsDataOut(t, ip)
		})
	}
}

func holdBackKeepsDataOut(t *testing.T, ip net.IP) {
	client, server, fd := tcpPair(t, ip)
	h := &heldConn{fd: fd}
	if !h.holdBack() {
		t.Fatal("holdBack: the filter was not attached")
	}
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// The answer goes out and is acknowledged: the server's send queue
	// empties although the client's data is dropped.
	if _, err := server.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		in, out, err := queues(fd)
		if err != nil {
			t.Fatal(err)
		}
		if in != 0 {
			t.Fatalf("%d bytes reached the socket through the filter", in)
		}
		if out == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's answer was never acknowledged (%d bytes unacknowledged)", out)
		}
		time.Sleep(time.Millisecond) // ACKs on loopback, bounded above
	}
	// The client still has its request unacknowledged: it was dropped,
	// not taken.
	info, err := clientInfo(client)
	if err != nil {
		t.Fatal(err)
	}
	if info.Unacked == 0 {
		t.Fatal("the client's request was acknowledged: the filter let it in")
	}
	h.letIn()
	if h.heldBack {
		t.Fatal("letIn left heldBack set")
	}
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("GET / HTTP/1.1\r\n\r\n"))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatalf("the request never came in after letIn: %v", err)
	}
	if string(got) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("got %q", got)
	}
}

// A socket with a filter of its own keeps it: holdBack leaves it alone.
func TestHoldBackLeavesAWorkersFilter(t *testing.T) {
	_, _, fd := tcpPair(t, net.IPv4(127, 0, 0, 1))
	accept := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}}
	prog := unix.SockFprog{Len: 1, Filter: &accept[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		t.Fatal(err)
	}
	h := &heldConn{fd: fd}
	if h.holdBack() {
		t.Fatal("holdBack replaced the socket's own filter")
	}
	h.letIn()
	if !hasFilter(fd) {
		t.Fatal("letIn removed the socket's own filter")
	}
}

func clientInfo(c *net.TCPConn) (*unix.TCPInfo, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *unix.TCPInfo
	var gerr error
	raw.Control(func(f uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(f), unix.IPPROTO_TCP, unix.TCP_INFO) })
	return info, gerr
}
