package e2e

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child"
	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/internal/reuseport"
	"github.com/hotcluster/hotcluster/internal/testroles"
)

func init() {
	roles.Register("udp-slot", roleUDPSlot)
	roles.Register("web-all", roleWebAll)
}

// roleWebAll serves hello on every listener it inherits, and shuts down
// on the stop signal.
func roleWebAll() int {
	var lns []net.Listener
	for _, name := range child.Names() {
		ln, err := child.Listen(name, "tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		lns = append(lns, ln)
	}
	return servePlain(lns...)
}

// roleUDPSlot answers each datagram with its generation and slot, until
// the stop signal.
func roleUDPSlot() int {
	pc, err := child.ListenPacket("", "udp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		pc.Close()
	}()
	child.Ready()
	var b [512]byte
	for {
		_, from, err := pc.ReadFrom(b[:])
		if err != nil {
			return 0
		}
		pc.WriteTo(fmt.Appendf(nil, "gen=%d worker=%d", child.Generation(), child.WorkerID()), from)
	}
}

// stickySources are the clients' source addresses: 127.0.0.2 to .40.
func stickySources() []netip.Addr {
	var out []netip.Addr
	for i := 2; i <= 40; i++ {
		out = append(out, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	return out
}

// predictedSlot is the slot the sticky table of slots 0..n-1 gives from
// (package internal/reuseport's model of what its program does).
func predictedSlot(from netip.Addr, n int) int {
	slots := make([]int, n)
	for i := range slots {
		slots[i] = i
	}
	return reuseport.StickyTable(slots)[reuseport.SourceHash(from)%reuseport.TableSize]
}

// slotFrom makes one request on a new connection from source address from
// and returns the generation and slot that answered.
func slotFrom(t *testing.T, network, addr string, from netip.Addr) (gen, slot int) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
	c, err := d.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("request from %s: %v", from, err)
	}
	sm := slotAnswerRx.FindSubmatch(b)
	if sm == nil {
		t.Fatalf("request from %s: answer %q", from, b)
	}
	gen, _ = strconv.Atoi(string(sm[1]))
	slot, _ = strconv.Atoi(string(sm[2]))
	return gen, slot
}

// needsEBPF skips where the master cannot load SK_REUSEPORT programs: a
// real limit of the platform (sticky balance is refused there, which
// TestStickyRefusedWithoutBPF proves).
func needsEBPF(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sticky balance needs the eBPF selector: root or CAP_BPF")
	}
}

// With --balance sticky each client source address keeps hitting its
// slot: over new connections, across 3 reloads and an upgrade of the
// master (the slot's new worker takes the client over), and scaling from
// 4 to 5 workers moves only the clients the table gives the new slot,
// about 1/5 of them. Every answer is the slot the table predicts.
func TestStickyClients(t *testing.T) {
	needsEBPF(t)
	t.Parallel()
	m := startOperated(t, "web-all", "--workers", "4", "--balance", "sticky", "--listen", "web=127.0.0.1:0", "--listen", "web6=[::1]:0")
	m.waitLine(0, `as web \(steered, ebpf, a socket per worker, sticky by client address\)`)
	m.waitReady(1)
	addr := m.listenAddr("web")
	addr6 := m.listenAddr("web6")
	sources := stickySources()
	check := func(what string, gen, n int) {
		t.Helper()
		used := map[int]bool{}
		for _, from := range sources {
			want := predictedSlot(from, n)
			for i := 0; i < 2; i++ {
				g, slot := slotFrom(t, "tcp", addr, from)
				if g != gen || slot != want {
					t.Fatalf("%s: request %d from %s served by gen %d slot %d, want gen %d slot %d", what, i, from, g, slot, gen, want)
				}
				used[slot] = true
			}
		}
		if len(used) < n-1 {
			t.Fatalf("%s: 39 addresses on slots %v only", what, used)
		}
		// The one IPv6 loopback address: its slot is the predicted one,
		// so the program read the IPv6 header's source.
		v6 := netip.IPv6Loopback()
		for i := 0; i < 3; i++ {
			if g, slot := slotFrom(t, "tcp", addr6, v6); g != gen || slot != predictedSlot(v6, n) {
				t.Fatalf("%s: request %d from ::1 served by gen %d slot %d, want gen %d slot %d", what, i, g, slot, gen, predictedSlot(v6, n))
			}
		}
	}
	check("gen 1", 1, 4)
	for gen := 2; gen <= 4; gen++ {
		m.reload(gen)
		check(fmt.Sprintf("after reload to gen %d", gen), gen, 4)
	}

	pid, _ := m.upgrade(m.pid, 0)
	t.Cleanup(func() { m.stopAt(pid) })
	st := statusOf(t, m.env)
	if st.PID != pid {
		t.Fatalf("status answered by pid %d, want the upgraded master %d", st.PID, pid)
	}
	check("after the upgrade", int(st.Generation), 4)
	for _, l := range st.Listeners {
		if !l.Sticky || !l.PerSlot {
			t.Errorf("status of the upgraded master: listener %+v, want sticky with a socket per worker", l)
		}
	}

	ev := watchEvents(t, m.env)
	mustCtl(t, m.env, "scale", "+1")
	ev.next(func(e control.Event) bool { return e.Event == "ready" && e.Slot != nil && *e.Slot == 4 })
	moved := 0
	for _, from := range sources {
		if predictedSlot(from, 4) != predictedSlot(from, 5) {
			moved++
		}
	}
	// Each address moves with probability 1/5, independently: the count
	// is binomial(39, 1/5), mean 7.8, sd 2.5; more than mean + 3 sd (15)
	// would mean the table moves more than a consistent hash does.
	n := float64(len(sources))
	if limit := n/5 + 3*math.Sqrt(n*0.2*0.8); float64(moved) > limit {
		t.Errorf("4 -> 5 workers moves %d of %.0f addresses, want at most %.0f", moved, n, limit)
	}
	check("after scale +1", int(st.Generation), 5)
	t.Logf("4 -> 5 workers: %d of %d addresses moved (to slot 4)", moved, len(sources))
}

// UDP with --balance sticky: a client's datagrams, from any port of its
// address, go to its slot's worker; after a reload the same socket's
// later datagrams go to the same slot's new worker.
func TestStickyUDP(t *testing.T) {
	needsEBPF(t)
	t.Parallel()
	m := startMaster(t, "udp-slot", "--workers", "4", "--balance", "sticky", "--listen", "dns=udp://127.0.0.1:0")
	m.waitLine(0, `as dns \(steered, ebpf, a socket per worker, sticky by client address\)`)
	m.waitReady(1)
	raddr, err := net.ResolveUDPAddr("udp", m.listenAddr("dns"))
	if err != nil {
		t.Fatal(err)
	}
	ask := func(c *net.UDPConn) (gen, slot int) {
		t.Helper()
		if _, err := c.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(testTimeout))
		var b [64]byte
		n, err := c.Read(b[:])
		if err != nil {
			t.Fatalf("answer to %s: %v", c.LocalAddr(), err)
		}
		sm := slotAnswerRx.FindSubmatch(b[:n])
		if sm == nil {
			t.Fatalf("answer %q", b[:n])
		}
		gen, _ = strconv.Atoi(string(sm[1]))
		slot, _ = strconv.Atoi(string(sm[2]))
		return gen, slot
	}
	dial := func(from netip.Addr) *net.UDPConn {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: from.AsSlice()}, raddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	sources := stickySources()[:20]
	kept := map[netip.Addr]*net.UDPConn{}
	for _, from := range sources {
		kept[from] = dial(from)
	}
	for _, gen := range []int{1, 2} {
		if gen == 2 {
			m.reload(2)
		}
		for _, from := range sources {
			want := predictedSlot(from, 4)
			for i, c := range []*net.UDPConn{kept[from], dial(from), kept[from]} {
				if g, slot := ask(c); g != gen || slot != want {
					t.Fatalf("gen %d: datagram %d from %s answered by gen %d slot %d, want slot %d", gen, i, c.LocalAddr(), g, slot, want)
				}
			}
		}
	}
}

// Without CAP_BPF the selector is classic BPF, which has no socket per
// slot: --balance sticky is refused, exit 2, with the reason and what to
// do, and no worker is started.
func TestStickyRefusedWithoutBPF(t *testing.T) {
	needsEBPF(t) // to drop the capability, the test must have it
	t.Parallel()
	setpriv := testroles.Tool(t, "setpriv")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--bounding-set=-bpf,-sys_admin,-perfmon", "--", self, "run", "--log-time=false",
		"--balance", "sticky", "--listen", "web=127.0.0.1:0", "--env", roleEnv+"=lib", "--", self)
	cmd.Env = append(os.Environ(), masterEnv(t)...)
	roles.Use("lib")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2; output:\n%s", err, out)
	}
	for _, want := range []string{"--balance sticky: listen 127.0.0.1:0: steered by cbpf (eBPF not permitted (it needs CAP_BPF))", "CAP_BPF", "--balance hash"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`CONTRACT|READY|\bfork\b`).Match(out) {
		t.Errorf("a worker was started:\n%s", out)
	}
}

// Reloads under load with --balance sticky lose nothing, from 16 clients
// on 8 source addresses, with a connection per request (the plain-Shutdown
// worker: the handoff alone protects it) and with keep-alive (the
// library's graceful drain).
func TestStickyReloadUnderLoad(t *testing.T) {
	needsEBPF(t)
	t.Parallel()
	for _, tc := range []struct {
		role      string
		keepAlive bool
	}{{"plain", false}, {"lib", true}} {
		t.Run(fmt.Sprintf("%s keepalive=%v", tc.role, tc.keepAlive), func(t *testing.T) {
			t.Parallel()
			m := startMaster(t, tc.role, "--workers", "4", "--balance", "sticky", "--listen", "web=127.0.0.1:0")
			addr := m.listenAddr("web")
			m.waitReady(1)
			stop := load(t, loadgen.Config{Addr: addr, Clients: 16, KeepAlive: tc.keepAlive, Sources: stickySources()[:8]})
			for gen := 2; gen <= 6; gen++ {
				m.reload(gen)
			}
			assertNoFailures(t, stop())
			assertServedBy(t, "tcp", addr, 6)
		})
	}
}

var pidAnswerRx = regexp.MustCompile(`pid=(\d+) gen=\d+ worker=(\d+)`)

// A worker that crashes gives its clients to the other slots until its
// respawn, which gets them back: each address is on its predicted slot
// again, served by the new worker of that slot.
func TestStickyCrashedSlotGetsItsClientsBack(t *testing.T) {
	needsEBPF(t)
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "4", "--balance", "sticky", "--listen", "web=127.0.0.1:0")
	m.waitReady(1)
	addr := m.listenAddr("web")
	sources := stickySources()
	var victim netip.Addr
	for _, from := range sources {
		if predictedSlot(from, 4) == 2 {
			victim = from
			break
		}
	}
	if !victim.IsValid() {
		t.Fatal("no address of 127.0.0.2-40 on slot 2")
	}
	pidOf := func(from netip.Addr) (pid, slot int) {
		t.Helper()
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(c)
		sm := pidAnswerRx.FindSubmatch(b)
		if err != nil || sm == nil {
			t.Fatalf("request from %s: %q, %v", from, b, err)
		}
		pid, _ = strconv.Atoi(string(sm[1]))
		slot, _ = strconv.Atoi(string(sm[2]))
		return pid, slot
	}
	old, slot := pidOf(victim)
	if slot != 2 {
		t.Fatalf("%s served by slot %d, want 2", victim, slot)
	}
	ev := watchEvents(t, m.env)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev.next(func(e control.Event) bool { return e.Event == "exit" && e.PID == old })
	ev.next(func(e control.Event) bool { return e.Event == "ready" && e.Slot != nil && *e.Slot == 2 })
	for _, from := range sources {
		pid, slot := pidOf(from)
		if want := predictedSlot(from, 4); slot != want {
			t.Fatalf("after slot 2's respawn: %s served by slot %d, want %d", from, slot, want)
		}
		if pid == old {
			t.Fatalf("%s served by the killed worker %d", from, old)
		}
	}
}
