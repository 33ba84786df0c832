package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child"
	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/internal/sockdiag"
	"golang.org/x/sys/unix"
)

func init() {
	roles.Register("never-accept-gen1", roleNeverAcceptGen1)
	roles.Register("nodelay", roleNoDelay)
}

// roleNeverAcceptGen1 is, in generation 1, a worker that reports ready
// and never accepts: connections pile up in its socket's accept queue.
// With IGNORE_TERM=1 it also ignores the stop signal, so that only SIGKILL
// ends it. Later generations serve as lib does.
func roleNeverAcceptGen1() int {
	if child.Generation() != 1 {
		return roleLib()
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	// It holds the socket (else it would not count as ready) and never
	// accepts from it.
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ln.Close()
	if err := child.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("NOT ACCEPTING")
	for range term {
		if os.Getenv("IGNORE_TERM") != "1" {
			return 0
		}
		fmt.Println("ignoring SIGTERM")
	}
	return 0
}

// roleNoDelay accepts on fd 3 with a bare accept(2), so that Go's net
// package (which sets TCP_NODELAY on what it accepts) cannot hide what the
// socket inherited from the listener, and reports TCP_NODELAY.
func roleNoDelay() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	for {
		select {
		case <-term:
			return 0
		default:
		}
		fds := []unix.PollFd{{Fd: 3, Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) {
			fmt.Fprintln(os.Stderr, "poll:", err)
			return 1
		} else if n == 0 {
			continue
		}
		nfd, _, err := unix.Accept4(3, unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			return 1
		}
		v, err := unix.GetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		if err != nil {
			fmt.Fprintln(os.Stderr, "getsockopt:", err)
			return 1
		}
		fmt.Printf("NODELAY=%d\n", v)
		// Read the request first: closing with unread bytes would reset.
		unix.Read(nfd, make([]byte, 4096))
		unix.Write(nfd, []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"))
		unix.Close(nfd)
	}
}

// strangerPy is a program that is not hotcluster: it listens on an address
// (with SO_REUSEPORT when asked), says READY with its PID and port, counts
// what it accepts, and exits with the total when its stdin closes.
const strangerPy = `
import os, select, socket, sys
host, port, reuse = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if reuse:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((host, port))
s.listen(128)
s.setblocking(False)
print("READY", os.getpid(), s.getsockname()[1], flush=True)
n = 0
while True:
    r, _, _ = select.select([s, sys.stdin], [], [])
    if s in r:
        try:
            c, _ = s.accept()
        except BlockingIOError:
            continue
        n += 1
        print("ACCEPT", n, flush=True)
        c.close()
    if sys.stdin in r and not sys.stdin.readline():
        print("TOTAL", n, flush=True)
        break
`

// stranger is a python3 process holding a socket on an address.
type stranger struct {
	pid, port int
	accepts   atomic.Int64
	stdin     io.WriteCloser
	total     chan int
}

// startStranger runs strangerPy with python as cred (nil: this user) on
// host:port and waits until it listens.
func startStranger(t *testing.T, python string, cred *syscall.Credential, host string, port int, reuse bool) *stranger {
	t.Helper()
	r := "0"
	if reuse {
		r = "1"
	}
	cmd := exec.Command(python, "-c", strangerPy, host, strconv.Itoa(port), r)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &stranger{stdin: stdin, total: make(chan int, 1)}
	ready := make(chan [2]int, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "READY":
				pid, _ := strconv.Atoi(f[1])
				p, _ := strconv.Atoi(f[2])
				ready <- [2]int{pid, p}
			case len(f) == 2 && f[0] == "ACCEPT":
				s.accepts.Add(1)
			case len(f) == 2 && f[0] == "TOTAL":
				n, _ := strconv.Atoi(f[1])
				s.total <- n
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(testTimeout):
			cmd.Process.Kill()
			<-done
		}
		cmd.Wait()
	})
	select {
	case rp := <-ready:
		s.pid, s.port = rp[0], rp[1]
	case <-done:
		t.Fatal("the python3 stranger exited before it listened")
	case <-time.After(testTimeout):
		t.Fatal("the python3 stranger did not listen within the test timeout")
	}
	return s
}

// close ends the stranger and returns how many connections it accepted.
func (s *stranger) close(t *testing.T) int {
	t.Helper()
	s.stdin.Close()
	select {
	case n := <-s.total:
		return n
	case <-time.After(testTimeout):
		t.Fatal("the python3 stranger did not report its total")
		return -1
	}
}

func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("needs python3 for a program that is not hotcluster: %v", err)
	}
	return p
}

// A program of the same user that joins the address after the master
// started, with SO_REUSEPORT, gets no connection, across reloads under
// load; the master logs it and shows it in status and metrics. Once with
// eBPF selection (root) and once with classic BPF (master and stranger as
// nobody, who may not load eBPF programs).
func TestStrangerGetsNoConnections(t *testing.T) {
	t.Parallel()
	for _, sel := range []string{"ebpf", "cbpf"} {
		t.Run(sel, func(t *testing.T) {
			t.Parallel()
			testStranger(t, sel)
		})
	}
}

func testStranger(t *testing.T, sel string) {
	if sel == "ebpf" && os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF) to load SK_REUSEPORT programs; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	python := python3(t)
	self, _ := os.Executable()
	bin := self
	top := t.TempDir()
	var cred *syscall.Credential
	var wrap []string
	if sel == "cbpf" && os.Geteuid() == 0 {
		// As nobody, who may not load eBPF programs. nobody needs a copy of
		// this binary and a python3 it can run, and a directory to write.
		nobody := lookupNobody(t)
		if python = "/usr/bin/python3"; !executable(python) {
			t.Skip("needs /usr/bin/python3, which nobody can run, for the stranger")
		}
		dir, err := os.MkdirTemp("", "hotcluster-stranger-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "hotcluster")
		copyFile(t, self, bin)
		top = filepath.Join(dir, "tmp")
		if err := os.Mkdir(top, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(top, int(nobody), int(nobody)); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: nobody, Gid: nobody}
		wrap = []string{"setpriv", "--reuid=" + strconv.Itoa(int(nobody)), "--regid=" + strconv.Itoa(int(nobody)), "--clear-groups"}
	}
	sock := filepath.Join(top, "ctl", "stranger.sock")
	args := append(wrap, bin, "run", "--env", roleEnv+"=lib", "--workers", "2", "--listen", "web=127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--control", sock, "--", bin)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), roleEnv+"=master", "GORACE=atexit_sleep_ms=0", "TMPDIR="+top, "XDG_RUNTIME_DIR="+top)
	m := startMasterCmd(t, cmd)
	sm, _ := m.waitLine(0, `listening on (\S+) as web \(steered, (\w+)`)
	addr := sm[1]
	if sm[2] != sel {
		t.Fatalf("listener steered by %s, want %s", sm[2], sel)
	}
	if sel == "cbpf" {
		m.waitLine(0, `as web \(steered, cbpf: eBPF not permitted \(it needs CAP_BPF\)`)
	}
	m.waitReady(1)
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	s := startStranger(t, python, cred, "127.0.0.1", p, true)

	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	m.reload(2)
	m.reload(3)
	m.reload(4)
	res := stop()
	assertNoFailures(t, res)
	if n := s.accepts.Load(); n != 0 {
		t.Fatalf("the stranger accepted %d of %d connections", n, int64(res.Requests)+n)
	}
	m.waitLine(0, `listen web: error: a socket not made by hotcluster joined `+regexpQuote(addr)+`: pid `+strconv.Itoa(s.pid)+` \(.*-c.*\); it gets no connections`)
	if n := m.count(`a socket not made by hotcluster joined`); n != 1 {
		t.Errorf("the stranger was logged %d times, want once", n)
	}

	st := statusOf(t, nil, "--control", sock)
	if len(st.ForeignSockets) != 1 {
		t.Fatalf("status lists foreign sockets %+v, want the stranger", st.ForeignSockets)
	}
	f := st.ForeignSockets[0]
	if f.Listener != "web" || f.Addr != addr || !f.Joined || f.TakesConnections || len(f.Owners) != 1 || f.Owners[0].PID != s.pid {
		t.Errorf("status lists %+v, want the stranger pid %d on %s, joined", f, s.pid, addr)
	}
	if len(st.Listeners) != 1 || st.Listeners[0].Selector != sel {
		t.Errorf("status listeners %+v, want one steered by %s", st.Listeners, sel)
	}
	text := mustCtl(t, nil, "status", "--control", sock)
	if !strings.Contains(text, "FOREIGN SOCKET on "+addr+" (listener web)") || !strings.Contains(text, fmt.Sprintf("pid %d (", s.pid)) {
		t.Errorf("status text does not show the stranger:\n%s", text)
	}
	msm, _ := m.waitLine(0, `metrics on (http://\S+/metrics)`)
	if v, ok := metricValue(scrape(t, msm[1]), "hotcluster_foreign_sockets", map[string]string{"listener": "web"}); !ok || v != 1 {
		t.Errorf("hotcluster_foreign_sockets{listener=\"web\"} = %v (present %v), want 1", v, ok)
	}
	if n := s.close(t); n != 0 {
		t.Errorf("the stranger accepted %d connections in all", n)
	}
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&0o001 != 0
}

// An address where another program already listens, with or without
// SO_REUSEPORT, is refused: exit 2, naming its PID and command line, and
// nothing is left running or listening.
func TestListenOnAnOccupiedAddress(t *testing.T) {
	t.Parallel()
	python := python3(t)
	self, _ := os.Executable()
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuseport=%v", reuse), func(t *testing.T) {
			t.Parallel()
			s := startStranger(t, python, nil, "127.0.0.1", 0, reuse)
			listen := fmt.Sprintf("web=127.0.0.1:%d", s.port)
			code, out := hotcluster(t, "run", "--env", roleEnv+"=lib", "--listen", listen, "--", self)
			want := fmt.Sprintf("hotcluster: listen %s: in use by pid %d (", listen, s.pid)
			if code != 2 || !strings.Contains(out, want) || !strings.Contains(out, " -c ") || !strings.Contains(out, "; stop it or pick another address") {
				t.Errorf("exit %d, output:\n%s\nwant exit 2 and %q…(python3 -c …); stop it or pick another address", code, out, want)
			}
			if strings.Contains(out, "CONTRACT") || strings.Contains(out, "[g1 w") {
				t.Errorf("a worker was started:\n%s", out)
			}
			conns, err := sockdiag.TCP(uint16(s.port), sockdiag.States(sockdiag.Listen))
			if err != nil {
				t.Fatal(err)
			}
			if len(conns) != 1 {
				t.Errorf("after the refusal %d sockets listen on port %d, want the stranger's alone: %+v", len(conns), s.port, conns)
			}
			if n := s.close(t); n != 0 {
				t.Errorf("the stranger accepted %d connections", n)
			}
		})
	}
}

// A second instance on the address of a running one is refused, naming
// the instance.
func TestSecondInstanceOnTheSameAddress(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	dir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + dir}
	first := startCommandEnv(t, env, []string{"--name", "first", "--env", roleEnv + "=lib", "--workers", "2", "--listen", "web=127.0.0.1:0"}, self)
	addr := first.listenAddr("web")
	first.waitReady(1)
	code, out := hotclusterEnv(t, env, "run", "--name", "second", "--env", roleEnv+"=lib", "--listen", "web="+addr, "--", self)
	want := fmt.Sprintf(`listen web=%s: in use by hotcluster instance "first" (pid %d: `, addr, first.pid)
	if code != 2 || !strings.Contains(out, want) || strings.Count(out, "hotcluster instance") != 1 {
		t.Errorf("exit %d, output:\n%s\nwant exit 2 and %q once", code, out, want)
	}
	assertServedBy(t, "tcp", addr, 1)
}

// dialQueued opens n connections to addr and sends a request on each; a
// worker that never accepts leaves them in its socket's accept queue.
func dialQueued(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

// The same when the old generation belonged to a previous master that was
// SIGKILLed during an upgrade (see TestStrandedQueueIsRelayed): the new
// master relays what it left queued to its own generation once it learns
// that master is gone, and each queued request is answered.
func TestStrandedQueueOfAKilledPreviousMaster(t *testing.T) {
	t.Parallel()
	m, _ := startCopiedMaster(t, "never-accept-gen1", "--workers", "1", "--quiet-timeout", "200ms",
		"--drain-timeout", "60s", "--env", "IGNORE_TERM=1", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	cs := dialQueued(t, addr, 16)
	m.signal(syscall.SIGUSR2)
	sm, _ := m.waitLine(0, `upgraded: master pid (\d+) took over`)
	newPID, _ := strconv.Atoi(sm[1])
	m.waitLine(0, `ignoring SIGTERM`) // the old master drains gen 1, which will not go
	if err := syscall.Kill(m.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitLine(0, `the previous master has exited`)
	m.waitLine(0, `listen web: relayed 16 connections left in the accept queue of socket 0, which no generation serves any more, to the serving generation`)
	assertAnswered(t, cs, 2)
	assertServedBy(t, "tcp", addr, 2)
	m.stopAt(newPID)
}

// Connections accepted from hotcluster's TCP sockets start with
// TCP_NODELAY, unless --nodelay=false.
func TestAcceptedConnectionsInheritNoDelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag []string
		want string
	}{
		{nil, "NODELAY=1"},
		{[]string{"--nodelay=false"}, "NODELAY=0"},
	} {
		m := startMaster(t, "nodelay", append([]string{"--workers", "1", "--listen", "web=127.0.0.1:0"}, tc.flag...)...)
		addr := m.listenAddr("web")
		body, err := get("tcp", addr, "/")
		if err != nil || body != "ok\n" {
			t.Fatalf("%v: answer %q, %v", tc.flag, body, err)
		}
		sm, _ := m.waitLine(0, `NODELAY=(\d)`)
		if sm[0] != tc.want {
			t.Errorf("%v: the worker's accepted socket reports %s, want %s", tc.flag, sm[0], tc.want)
		}
	}
}
