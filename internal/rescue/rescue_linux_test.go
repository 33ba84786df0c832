package rescue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testTimeout = 20 * time.Second

// gen is a stand-in for a generation of workers: an HTTP/1.1 keep-alive
// server on its own listener, answering "gen=NAME path=P", whose
// connections the test can close the way a draining server closes idle
// ones (close(2), no shutdown).
type gen struct {
	t    *testing.T
	name string
	ln   *net.TCPListener
	mu   sync.Mutex
	open map[net.Conn]bool
	idle map[net.Conn]bool
	wg   sync.WaitGroup
	// hold, when set, is called with each connection once its request
	// was read and before it is answered.
	hold func(path string)
}

func startGen(t *testing.T, name string) *gen {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gen{t: t, name: name, ln: ln.(*net.TCPListener), open: map[net.Conn]bool{}, idle: map[net.Conn]bool{}}
	g.wg.Add(1)
	go g.serve()
	t.Cleanup(g.stop)
	return g
}

func (g *gen) addr() netip.AddrPort { return g.ln.Addr().(*net.TCPAddr).AddrPort() }

func (g *gen) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		g.open[c] = true
		g.idle[c] = true
		g.mu.Unlock()
		g.wg.Add(1)
		go g.conn(c)
	}
}

func (g *gen) conn(c net.Conn) {
	defer g.wg.Done()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		g.mu.Lock()
		if err != nil || !g.open[c] {
			delete(g.open, c)
			delete(g.idle, c)
			g.mu.Unlock()
			c.Close()
			return
		}
		delete(g.idle, c)
		g.mu.Unlock()
		io.Copy(io.Discard, req.Body)
		if g.hold != nil {
			g.hold(req.URL.Path)
		}
		body := fmt.Sprintf("gen=%s path=%s", g.name, req.URL.Path)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		g.mu.Lock()
		g.idle[c] = true
		g.mu.Unlock()
	}
}

// closeIdle closes every connection not in the middle of a request, as
// net/http's Shutdown and Node's server.close() do at a stop signal.
func (g *gen) closeIdle() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.idle {
		delete(g.open, c)
		delete(g.idle, c)
		c.Close()
	}
}

func (g *gen) stop() {
	g.ln.Close()
	g.mu.Lock()
	for c := range g.open {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// client is a keep-alive HTTP/1.1 client on one connection.
type client struct {
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, a netip.AddrPort) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", a.String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, br: bufio.NewReader(c)}
}

func (c *client) get(path string) (string, error) {
	c.c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := fmt.Fprintf(c.c, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path); err != nil {
		return "", err
	}
	return c.read()
}

func (c *client) read() (string, error) {
	c.c.SetDeadline(time.Now().Add(testTimeout))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b), err
}

func newRescuer(t *testing.T, listeners ...Listener) (*Rescuer, func()) {
	t.Helper()
	rs, err := New(Config{Listeners: listeners, Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rs.Run(ctx)
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Fatal("Run did not return")
		}
	}
	t.Cleanup(stop)
	return rs, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// eventually polls cond until it holds or the test's deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, testTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// queued makes a listening socket that nobody accepts from, with n
// clients waiting in its queue, each with a request sent; it returns the
// clients and the accepted descriptors, as handoff takes them.
func queued(t *testing.T, n int) ([]*client, []int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var cs []*client
	for i := 0; i < n; i++ {
		c := dial(t, ln.Addr().(*net.TCPAddr).AddrPort())
		if _, err := fmt.Fprintf(c.c, "GET /queued%d HTTP/1.1\r\nHost: t\r\n\r\n", i); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	var fds []int
	rc.Control(func(fd uintptr) {
		for len(fds) < n {
			nfd, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			if errors.Is(err, unix.EAGAIN) {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				t.Errorf("accept: %v", err)
				return
			}
			fds = append(fds, nfd)
		}
	})
	return cs, fds
}

// Connections from a retired socket's queue are relayed to the serving
// generation with their request unread, and stay relayed for more
// requests.
func TestStrandedConnectionsAreRelayed(t *testing.T) {
	g2 := startGen(t, "2")
	rs, _ := newRescuer(t, Listener{Name: "web", Addr: g2.addr(), Mode: Queue})
	cs, fds := queued(t, 8)
	if n := rs.Stranded("web", 0, fds); n != len(fds) {
		t.Fatalf("Stranded took %d of %d", n, len(fds))
	}
	for i, c := range cs {
		got, err := c.read()
		if want := fmt.Sprintf("gen=2 path=/queued%d", i); err != nil || got != want {
			t.Fatalf("client %d: %q, %v; want %q", i, got, err, want)
		}
		got, err = c.get("/again")
		if err != nil || got != "gen=2 path=/again" {
			t.Fatalf("client %d, second request: %q, %v", i, got, err)
		}
	}
	eventually(t, "relays counted", func() bool { st := rs.Status(); return st.Queued == 8 && st.Relays == 8 })
	// The client's end ends the relay.
	for _, c := range cs {
		c.c.Close()
	}
	eventually(t, "relays ended", func() bool { return rs.Status().Relays == 0 })
}

// Off and a disarmed rescuer take nothing: the caller resets, as before.
func TestStrandedOffOrDisarmed(t *testing.T) {
	g2 := startGen(t, "2")
	rs, _ := newRescuer(t, Listener{Name: "web", Addr: g2.addr(), Mode: Off})
	_, fds := queued(t, 2)
	if n := rs.Stranded("web", 0, fds); n != 0 {
		t.Errorf("mode off: Stranded took %d", n)
	}
	if n := rs.Stranded("other", 0, fds); n != 0 {
		t.Errorf("unknown listener: Stranded took %d", n)
	}
	armed := false
	rs2, err := New(Config{Listeners: []Listener{{Name: "web", Addr: g2.addr(), Mode: HTTP}}, Armed: func() bool { return armed }})
	if err != nil {
		t.Fatal(err)
	}
	if n := rs2.Stranded("web", 0, fds); n != 0 {
		t.Errorf("disarmed: Stranded took %d", n)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Beyond Config.Max a stranded connection is left to the caller.
func TestStrandedBound(t *testing.T) {
	g2 := startGen(t, "2")
	rs, err := New(Config{Listeners: []Listener{{Name: "web", Addr: g2.addr(), Mode: Queue}}, Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rs.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cs, fds := queued(t, 5)
	n := rs.Stranded("web", 0, fds)
	if n != 3 {
		t.Fatalf("Stranded took %d of 5 with Max 3", n)
	}
	for _, fd := range fds[n:] {
		resetFD(fd)
	}
	for i, c := range cs {
		_, err := c.read()
		if i < 3 && err != nil {
			t.Errorf("client %d (relayed): %v", i, err)
		}
		if i >= 3 && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d (beyond the bound): %v, want a reset", i, err)
		}
	}
}

// hold makes the test process the "worker" of g: Hold takes duplicates of
// g's connections as if the test process were about to get its stop
// signal.
func holdSelf(t *testing.T, rs *Rescuer, want int) {
	t.Helper()
	_ = rs.Hold(os.Getpid(), HoldOptions{})
	eventually(t, fmt.Sprintf("%d connections held", want), func() bool { return rs.Status().Held >= want })
}

// A keep-alive connection its worker closes while idle is closed by the
// master at once if the client sent nothing, and relayed if the client's
// next request was on its way; the client sees no failure either way.
func TestKeepAliveRescue(t *testing.T) {
	g1, g2 := startGen(t, "1"), startGen(t, "2")
	// Listener g1's address for the hold; relays dial the "serving
	// generation", g2 (in the master, both are the same address).
	rs, _ := newRescuer(t, Listener{Name: "web", Addr: g1.addr(), Mode: HTTP, dial: g2.addr().String()})
	idle, busy := dial(t, g1.addr()), dial(t, g1.addr())
	for _, c := range []*client{idle, busy} {
		if got, err := c.get("/first"); err != nil || got != "gen=1 path=/first" {
			t.Fatalf("first request: %q, %v", got, err)
		}
	}
	holdSelf(t, rs, 2)
	// The worker closes its idle connections; the busy client's next
	// request was on its way.
	g1.closeIdle()
	if _, err := fmt.Fprintf(busy.c, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := busy.read(); err != nil || got != "gen=2 path=/next" {
		t.Fatalf("busy client: %q, %v; want the answer of gen 2", got, err)
	}
	if got, err := busy.get("/more"); err != nil || got != "gen=2 path=/more" {
		t.Fatalf("busy client, relayed: %q, %v", got, err)
	}
	// The idle client sees a plain close.
	idle.c.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := idle.c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("idle client: read %d, %v; want EOF", n, err)
	}
	eventually(t, "counted", func() bool {
		st := rs.Status()
		return st.Relayed == 1 && st.Closed == 1 && st.Held == 0 && st.Relays == 1
	})
}

// A rescuer that has stopped takes nothing more: the caller resets, and
// no descriptor is left with a loop that will never relay it.
func TestStrandedAfterStop(t *testing.T) {
	g2 := startGen(t, "2")
	rs, err := New(Config{Listeners: []Listener{{Name: "web", Addr: g2.addr(), Mode: Queue}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rs.Run(ctx) }()
	cancel()
	<-done
	cs, fds := queued(t, 2)
	if n := rs.Stranded("web", 0, fds); n != 0 {
		t.Fatalf("a stopped rescuer took %d connections", n)
	}
	for _, fd := range fds {
		resetFD(fd)
	}
	for i, c := range cs {
		if _, err := c.read(); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d: %v, want a reset", i, err)
		}
	}
	if st := rs.Status(); st.Relays != 0 || st.Queued != 0 {
		t.Errorf("status after stop: %+v", st)
	}
}
