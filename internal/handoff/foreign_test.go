package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logLines collects what Sockets logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) matching(re string) []string {
	rx := regexp.MustCompile(re)
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if rx.MatchString(s) {
			out = append(out, s)
		}
	}
	return out
}

// selectors runs f once per selector this process may use: eBPF (where
// it can load SK_REUSEPORT programs) and classic BPF.
func selectors(t *testing.T, f func(t *testing.T, classic bool)) {
	for _, classic := range []bool{false, true} {
		name := "ebpf"
		if classic {
			name = "cbpf"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, classic)
		})
	}
}

func open(t *testing.T, cfg Config, listen ...string) (*Sockets, *logLines) {
	t.Helper()
	logs := &logLines{}
	cfg.Log = logs.printf
	for _, l := range listen {
		spec, err := ParseSpec(l)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Specs = append(cfg.Specs, spec)
	}
	if cfg.QuietTimeout == 0 {
		cfg.QuietTimeout = 30 * time.Second
	}
	cfg.Grace = time.Millisecond
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(true) })
	return s, logs
}

func wantSelector(t *testing.T, s *Sockets, classic bool) {
	t.Helper()
	l := s.Listeners()[0]
	want := "ebpf"
	if classic {
		want = "cbpf"
	}
	if l.Mode != Steered || l.Selector != want {
		if want == "ebpf" && os.Geteuid() != 0 {
			t.Skipf("needs root (CAP_BPF) to load SK_REUSEPORT programs: %s", l.Why)
		}
		t.Fatalf("listener %+v, want steered by %s", l, want)
	}
}

// reusePortListener is a stranger: a listening socket of the same user with
// SO_REUSEPORT on addr, which the kernel lets join the master's group.
func reusePortListener(t *testing.T, network, addr string) *net.TCPListener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// A stranger that joins the group after Open gets no connection, before
// and after turnovers, whichever selector steers; it is logged once and
// listed by Foreign, with this process as its owner.
func TestStrangerGetsNoConnections(t *testing.T) {
	selectors(t, func(t *testing.T, classic bool) {
		s, logs := open(t, Config{classic: classic}, "web=127.0.0.1:0")
		wantSelector(t, s, classic)
		addr := s.Listeners()[0].Addr
		old := genListener(t, s, 1)
		if err := s.Activate(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		stranger := reusePortListener(t, "tcp4", addr)
		for gen := uint64(2); gen <= 6; gen++ {
			cur := genListener(t, s, gen)
			if err := s.Activate(context.Background(), gen); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 10; i++ {
				if got := served(t, addr, cur, old, stranger); got != 0 {
					t.Fatalf("after gen %d was activated, a connection went to %s", gen, []string{"", "the old generation", "the stranger"}[got])
				}
			}
			// The old generation drains; its socket is free again.
			old.Close()
			s.Release(gen - 1)
			old = cur
			if fs := s.Foreign(); len(fs) != 1 || !fs[0].Joined || fs[0].TakesConnections || fs[0].Addr != addr {
				t.Fatalf("Foreign() = %+v, want the stranger, joined, on %s", fs, addr)
			}
		}
		fs := s.Foreign()
		if len(fs[0].Owners) == 0 || fs[0].Owners[0].PID != os.Getpid() || fs[0].Listener != "web" {
			t.Errorf("Foreign() = %+v, want owner pid %d on listener web", fs, os.Getpid())
		}
		if n := len(logs.matching(`^listen web: error: a socket not made by hotcluster joined ` + regexp.QuoteMeta(addr) + fmt.Sprintf(`: pid %d \(.*\); it gets no connections$`, os.Getpid()))); n != 1 {
			t.Errorf("%d log lines about the stranger, want 1: %q", n, logs.lines)
		}
		stranger.Close()
		s.checkForeign()
		if fs := s.Foreign(); len(fs) != 0 {
			t.Errorf("Foreign() after the stranger closed = %+v", fs)
		}
		if len(logs.matching(`is gone$`)) != 1 {
			t.Errorf("no line saying the stranger is gone: %q", logs.lines)
		}
	})
}

// Watch finds a stranger on its own, at its interval, and stops with ctx.
func TestWatch(t *testing.T) {
	t.Parallel()
	s, logs := open(t, Config{}, "web=127.0.0.1:0")
	addr := s.Listeners()[0].Addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 10*time.Millisecond)
	}()
	reusePortListener(t, "tcp4", addr)
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Foreign()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not find the stranger within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch still running 10s after its context ended")
	}
	if len(logs.matching(`joined`)) != 1 {
		t.Errorf("log: %q", logs.lines)
	}
}

// Open refuses an address where another socket listens or (UDP) is bound,
// overlapping included, whatever SO_REUSEPORT says, and names the owner.
func TestOpenRefusesAnOccupiedAddress(t *testing.T) {
	t.Parallel()
	reuse := reusePortListener(t, "tcp4", "127.0.0.1:0")
	port := reuse.Addr().(*net.TCPAddr).Port
	wild := reusePortListener(t, "tcp4", "0.0.0.0:0")
	wport := wild.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	uport := udp.LocalAddr().(*net.UDPAddr).Port
	for _, tc := range []struct{ listen, on string }{
		{fmt.Sprintf("web=127.0.0.1:%d", port), ""},
		{fmt.Sprintf("web=:%d", port), fmt.Sprintf(" on 127.0.0.1:%d", port)},
		{fmt.Sprintf("web=127.0.0.1:%d", wport), fmt.Sprintf(" on 0.0.0.0:%d", wport)},
		{fmt.Sprintf("web=udp://127.0.0.1:%d", uport), ""},
	} {
		spec, _ := ParseSpec(tc.listen)
		s, err := Open(Config{Specs: []Spec{spec}})
		if err == nil {
			s.Close(true)
			t.Errorf("Open(%s) succeeded", tc.listen)
			continue
		}
		var iu *InUseError
		if !errors.As(err, &iu) || len(iu.Sockets) != 1 || len(iu.Sockets[0].Owners) == 0 || iu.Sockets[0].Owners[0].PID != os.Getpid() {
			t.Errorf("Open(%s) = %v, want an *InUseError naming pid %d", tc.listen, err, os.Getpid())
			continue
		}
		want := fmt.Sprintf("listen %s: in use by pid %d (%s)%s; stop it or pick another address", tc.listen, os.Getpid(), iu.Sockets[0].Owners[0].Command, tc.on)
		if err.Error() != want {
			t.Errorf("Open(%s) = %q\nwant %q", tc.listen, err, want)
		}
	}
	// Another address on the same port is free.
	spec, _ := ParseSpec(fmt.Sprintf("web=127.0.0.2:%d", port))
	if s, err := Open(Config{Specs: []Spec{spec}}); err != nil {
		t.Errorf("Open(%s) beside 127.0.0.1: %v", spec, err)
	} else {
		s.Close(true)
	}
}

// With classic BPF the group is full at Open: a generation that would need
// a fifth socket fails, and sockets are reused once released.
func TestClassicGroupIsFixed(t *testing.T) {
	t.Parallel()
	s, _ := open(t, Config{classic: true}, "web=127.0.0.1:0")
	wantSelector(t, s, true)
	if n := len(s.ls[0].socks); n != GroupSize {
		t.Fatalf("classic group of %d sockets after Open, want %d", n, GroupSize)
	}
	for gen := uint64(1); gen <= GroupSize; gen++ {
		genListener(t, s, gen)
		if err := s.Activate(context.Background(), gen); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Files(GroupSize+1, 0)
	if want := fmt.Sprintf("%d generations hold sockets: wait for the old ones to drain", GroupSize); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Files for a fifth generation: %v, want %q", err, want)
	}
	s.Release(1)
	genListener(t, s, GroupSize+1)
	if n := len(s.ls[0].socks); n != GroupSize {
		t.Errorf("group of %d sockets, want %d", n, GroupSize)
	}
}

// Connections left in the queue of a socket whose generation is gone are
// reset, so their clients fail at once.
func TestReleaseResetsStrandedConnections(t *testing.T) {
	t.Parallel()
	s, logs := open(t, Config{QuietTimeout: 100 * time.Millisecond}, "web=127.0.0.1:0")
	addr := s.Listeners()[0].Addr
	genListener(t, s, 1) // gen 1 never accepts
	if err := s.Activate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	var clients []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	genListener(t, s, 2)
	var qe *QuietError
	if err := s.Activate(context.Background(), 2); !errors.As(err, &qe) {
		t.Fatalf("Activate(2) = %v, want a *QuietError: gen 1 never accepts", err)
	}
	s.Release(1)
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d: read %v, want a connection reset", i, err)
		}
	}
	if got := logs.matching(`^listen web: reset 5 connections left in the accept queue of socket 0, which no generation serves any more$`); len(got) != 1 {
		t.Errorf("log %q, want one line about 5 reset connections", logs.lines)
	}
}

// Datagrams queued on a UDP socket nobody serves any more are dropped.
func TestReleaseDropsStrandedDatagrams(t *testing.T) {
	t.Parallel()
	s, logs := open(t, Config{QuietTimeout: 100 * time.Millisecond}, "dns=udp://127.0.0.1:0")
	addr := s.Listeners()[0].Addr
	files, err := s.Files(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	files[0].Close()
	if err := s.Activate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		c.Write([]byte("query"))
	}
	if _, err := s.Files(2, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(context.Background(), 2); err == nil {
		t.Fatal("Activate(2) returned nil: the datagrams should have kept gen 1's socket busy")
	}
	s.Release(1)
	if got := logs.matching(`^listen dns: dropped 3 datagrams left in the queue of socket 0`); len(got) != 1 {
		t.Errorf("log %q, want one line about 3 dropped datagrams", logs.lines)
	}
}

// The master's TCP sockets are TCP_NODELAY unless Nagle is asked for, and
// what a worker accepts inherits it.
func TestNoDelay(t *testing.T) {
	t.Parallel()
	for _, nagle := range []bool{false, true} {
		s, _ := open(t, Config{Nagle: nagle}, "web=127.0.0.1:0")
		addr := s.Listeners()[0].Addr
		files, err := s.Files(1, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer files[0].Close()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc, _ := files[0].SyscallConn()
		var got int
		var aerr error
		deadline := time.Now().Add(10 * time.Second)
		for {
			rc.Control(func(fd uintptr) {
				var nfd int
				if nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC); aerr == nil {
					got, aerr = unix.GetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
					unix.Close(nfd)
				}
			})
			if !errors.Is(aerr, unix.EAGAIN) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if aerr != nil {
			t.Fatal(aerr)
		}
		if want := !nagle; (got != 0) != want {
			t.Errorf("Nagle %v: accepted socket has TCP_NODELAY %d", nagle, got)
		}
	}
}

// fakeStore keeps duplicates, as package upgrade's store does.
type fakeStore struct {
	mu    sync.Mutex
	files map[string]*os.File
}

func (f *fakeStore) AddFile(name string, file *os.File) error {
	d, err := dupFile(mustRaw(file), name)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = make(map[string]*os.File)
	}
	f.files[name] = d
	return nil
}

func (f *fakeStore) File(name string) (*os.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files[name] == nil {
		return nil, nil
	}
	return dupFile(mustRaw(f.files[name]), name)
}

func (f *fakeStore) close() {
	for _, file := range f.files {
		file.Close()
	}
}

func mustRaw(f *os.File) syscall.RawConn {
	rc, err := f.SyscallConn()
	if err != nil {
		panic(err)
	}
	return rc
}

// An upgraded master takes the group and its selector over (with eBPF, the
// very maps), steers it past a stranger, and a master whose upgrade failed
// takes the traffic back with Reclaim.
func TestUpgradeKeepsTheSelector(t *testing.T) {
	selectors(t, func(t *testing.T, classic bool) {
		st := &fakeStore{}
		defer st.close()
		s1, _ := open(t, Config{classic: classic, Store: st}, "web=127.0.0.1:0")
		wantSelector(t, s1, classic)
		addr := s1.Listeners()[0].Addr
		g1 := genListener(t, s1, 1)
		if err := s1.Activate(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		stranger := reusePortListener(t, "tcp4", addr)
		if err := s1.Persist(); err != nil {
			t.Fatal(err)
		}
		prev := s1.Handover()
		spec, _ := ParseSpec("web=127.0.0.1:0")
		s2, err := Open(Config{Specs: []Spec{spec}, Store: st, Previous: &prev, classic: classic, QuietTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close(false)
		if l := s2.Listeners()[0]; l.Selector != s1.Listeners()[0].Selector || l.Addr != addr {
			t.Fatalf("taken over as %+v, want %+v", l, s1.Listeners()[0])
		}
		// Still steered to gen 1 until the new master activates its own.
		if got := served(t, addr, g1, stranger); got != 0 {
			t.Fatal("after the takeover a connection went to the stranger")
		}
		g2 := genListener(t, s2, 2)
		if err := s2.Activate(context.Background(), 2); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if got := served(t, addr, g2, g1, stranger); got != 0 {
				t.Fatalf("after the new master's activation a connection went to listener %d", got)
			}
		}
		if err := s1.Reclaim(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if got := served(t, addr, g1, g2, stranger); got != 0 {
				t.Fatalf("after Reclaim a connection went to listener %d", got)
			}
		}
	})
}
