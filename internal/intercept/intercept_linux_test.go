package intercept

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hotcluster/hotcluster/internal/testroles"
	"golang.org/x/sys/unix"
)

// The tests start real processes: the test binary as a shim that loads the
// filter and execs the test binary again as a "binder", which makes the
// system calls a step list names and prints what each returned. The
// supervisor runs in the test process, as it runs in the master.

var roles testroles.Set

func init() {
	roles.Register("shim", roleShim)
	roles.Register("binder", roleBinder)
}

func TestMain(m *testing.M) {
	if code, ok := roles.Play(); ok {
		os.Exit(code)
	}
	code := m.Run()
	if code == 0 {
		code = roles.CheckUsed()
	}
	os.Exit(code)
}

const timeout = 30 * time.Second

// roleShim is the shim's part: load the filter (first, with
// SANDBOX=filter, under a filter of its own that refuses
// seccomp(SECCOMP_SET_MODE_FILTER), as a container's profile may), then
// exec the binder on the same thread.
func roleShim() int {
	runtime.LockOSThread()
	if os.Getenv("SANDBOX") == "filter" {
		if err := refuseFilters(); err != nil {
			fmt.Fprintln(os.Stderr, "sandbox:", err)
			return 3
		}
	}
	if err := Install(3); err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		return 127
	}
	os.Setenv(testroles.Env, "binder")
	err := syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 127
}

// refuseFilters loads a filter that makes seccomp(SECCOMP_SET_MODE_FILTER,
// …) fail with EPERM.
func refuseFilters() error {
	arch, err := auditArch()
	if err != nil {
		return err
	}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	f := []unix.SockFilter{
		{Code: ld, K: 4},
		{Code: jeq, Jt: 0, Jf: 4, K: arch},
		{Code: ld, K: 0},
		{Code: jeq, Jt: 0, Jf: 2, K: unix.SYS_SECCOMP},
		{Code: ld, K: 16}, // args[0], low half on little-endian machines
		{Code: jeq, Jt: 1, Jf: 0, K: unix.SECCOMP_SET_MODE_FILTER},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	_, err = seccomp(unix.SECCOMP_SET_MODE_FILTER, 0, unsafe.Pointer(&prog))
	return err
}

// roleBinder runs the steps in its arguments, one output line each:
//
//	tcp4|tcp6|udp4 ADDR   socket, bind; the socket becomes the current one
//	unix PATH             the same for a unix stream socket
//	thread tcp4 ADDR      the same, from a thread that is not the leader
//	listen                listen(2) on the current socket
//	wait                  read a line from stdin first
func roleBinder() int {
	args := os.Args[1:]
	var cur int
	in := bufio.NewReader(os.Stdin)
	for i := 0; i < len(args); i++ {
		switch step := args[i]; step {
		case "listen":
			fmt.Printf("listen: %s\n", errText(unix.Listen(cur, 16)))
		case "wait":
			in.ReadString('\n')
		case "loop":
			// loop N: bind N UDP sockets to 127.0.0.1:0, print ns per bind.
			n, _ := strconv.Atoi(args[i+1])
			i++
			start := time.Now()
			for range n {
				fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
				unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
				unix.Close(fd)
			}
			fmt.Printf("loop: %d ns\n", time.Since(start).Nanoseconds()/int64(n))
		case "nnp":
			b, _ := os.ReadFile("/proc/self/status")
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "NoNewPrivs:") {
					fmt.Println(strings.Join(strings.Fields(l), " "))
				}
			}
		case "thread":
			done := make(chan struct{})
			network, addr := args[i+1], args[i+2]
			i += 2
			go func() {
				// Locked, while the main goroutine holds the main thread:
				// another thread of the process.
				runtime.LockOSThread()
				defer close(done)
				if unix.Gettid() == unix.Getpid() {
					fmt.Println("thread: on the leader")
					return
				}
				cur = bindStep(network, addr)
			}()
			<-done
		default:
			cur = bindStep(step, args[i+1])
			i++
		}
	}
	return 0
}

func init() {
	if os.Getenv(testroles.Env) == "binder" {
		runtime.LockOSThread()
	}
}

// bindStep makes a socket of network, binds it to addr and prints
// "bind NETWORK ADDR: RESULT ino=… nonblock=… cloexec=… name=…".
func bindStep(network, addr string) int {
	var fd int
	var err error
	var sa unix.Sockaddr
	var ap netip.AddrPort
	if network == "unix" {
		fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		sa = &unix.SockaddrUnix{Name: addr}
	} else {
		ap = netip.MustParseAddrPort(addr)
	}
	switch network {
	case "tcp4", "udp4":
		typ := unix.SOCK_STREAM
		if network == "udp4" {
			typ = unix.SOCK_DGRAM
		}
		fd, err = unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	case "tcp6":
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err != nil {
		fmt.Printf("bind %s %s: socket: %v\n", network, addr, err)
		return -1
	}
	err = unix.Bind(fd, sa)
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	fdfl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	name := "?"
	if got, err := unix.Getsockname(fd); err == nil {
		if a, err := fromSockaddr(got); err == nil {
			name = a.String()
		}
	}
	fmt.Printf("bind %s %s: %s ino=%d nonblock=%v cloexec=%v name=%s\n", network, addr, errText(err), st.Ino,
		fl&unix.O_NONBLOCK != 0, fdfl&unix.FD_CLOEXEC != 0, name)
	return fd
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// events records what a supervisor reported.
type events struct {
	mu        sync.Mutex
	installed []bool
	failed    []error
	bound     []string // "i asked"
	listened  []int
	inUse     []string
	changed   chan struct{}
}

func (e *events) add(f func()) {
	e.mu.Lock()
	f()
	e.mu.Unlock()
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

func (e *events) callbacks() Callbacks {
	return Callbacks{
		Installed: func(nnp bool) { e.add(func() { e.installed = append(e.installed, nnp) }) },
		Failed:    func(err error) { e.add(func() { e.failed = append(e.failed, err) }) },
		Bound:     func(i int, asked string) { e.add(func() { e.bound = append(e.bound, fmt.Sprintf("%d %s", i, asked)) }) },
		Listened:  func(i int) { e.add(func() { e.listened = append(e.listened, i) }) },
		InUse:     func(asked string) { e.add(func() { e.inUse = append(e.inUse, asked) }) },
	}
}

func (e *events) snapshot() events {
	e.mu.Lock()
	defer e.mu.Unlock()
	return events{installed: append([]bool(nil), e.installed...), failed: append([]error(nil), e.failed...),
		bound: append([]string(nil), e.bound...), listened: append([]int(nil), e.listened...), inUse: append([]string(nil), e.inUse...)}
}

// worker is a binder started under the filter, with its supervisor.
type worker struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin *os.File
	lines chan string
	ev    *events
	sup   *Supervisor
	ran   chan struct{} // closed when Run returned
}

// listenerSocket binds a listening socket as the master does (non-blocking,
// outside the netpoller) and returns it and its address.
func listenerSocket(t *testing.T, network, addr string) (*os.File, netip.AddrPort) {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if ap.Addr().Is6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	typ := unix.SOCK_STREAM
	if strings.HasPrefix(network, "udp") {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 128); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := unix.Getsockname(fd)
	a, _ := fromSockaddr(got)
	f := os.NewFile(uintptr(fd), addr)
	t.Cleanup(func() { f.Close() })
	return f, netip.AddrPortFrom(a.ip, a.port)
}

func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st syscall.Stat_t
	rc, _ := f.SyscallConn()
	rc.Control(func(fd uintptr) { syscall.Fstat(int(fd), &st) })
	return st.Ino
}

// start says how to start a worker.
type start struct {
	sockets []*os.File // its listeners
	env     []string   // added to the shim's environment
	wrap    []string   // a command that execs the shim (setpriv)
	dir     string
}

// startWorker starts the shim, and a supervisor for it over the listeners.
func startWorker(t *testing.T, st start, steps ...string) *worker {
	t.Helper()
	sockets := st.sockets
	ours, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	argv := append(append(append([]string(nil), st.wrap...), self), steps...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = st.dir
	// No second of sleep at the race detector's exit.
	cmd.Env = append(append(os.Environ(), testroles.Env+"="+roles.Use("shim"), "GORACE=atexit_sleep_ms=0"), st.env...)
	roles.Use("binder")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = stdin
	ev := &events{changed: make(chan struct{}, 1)}
	names := make([]string, len(sockets))
	for i := range names {
		names[i] = "l" + strconv.Itoa(i)
	}
	sup, err := NewSupervisor(ours, names, sockets, ev.callbacks())
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	stdin.Close()
	wk := &worker{t: t, cmd: cmd, stdin: w, lines: make(chan string, 64), ev: ev, sup: sup, ran: make(chan struct{})}
	go func() { defer close(wk.ran); sup.Run() }()
	go func() {
		defer close(wk.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			wk.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range wk.lines {
		}
		cmd.Wait()
		w.Close()
		sup.Close()
		<-wk.ran
	})
	return wk
}

// line returns the worker's next output line.
func (w *worker) line() string {
	w.t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			w.t.Fatal("the worker's output ended")
		}
		return l
	case <-time.After(timeout):
		w.t.Fatal("no line from the worker")
	}
	return ""
}

// field returns key's value in a bindStep line.
func field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestBindOfAListenerGetsTheMastersSocket(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	web, addr := listenerSocket(t, "tcp", "127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0") // held by someone else
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	port := strconv.Itoa(int(addr.Port()))
	w := startWorker(t, start{sockets: []*os.File{web}},
		"tcp4", "0.0.0.0:"+port, "listen", // the wildcard: the master's socket
		"udp4", "127.0.0.1:"+port, // a datagram socket: untouched
		"tcp4", "127.0.0.1:0", "listen", // a port of its own: untouched
		"tcp4", busy, // taken by another socket: EADDRINUSE, reported
		"thread", "tcp4", "127.0.0.1:"+port, // from another thread
	)
	want := inode(t, web)

	l := w.line()
	if !strings.HasPrefix(l, "bind tcp4 0.0.0.0:"+port+": ok") || field(l, "ino") != strconv.FormatUint(want, 10) {
		t.Errorf("wildcard bind: %q, want ok with the master's socket (inode %d)", l, want)
	}
	if field(l, "name") != addr.String() || field(l, "nonblock") != "true" || field(l, "cloexec") != "true" {
		t.Errorf("wildcard bind: %q, want name=%s nonblock=true (the master's socket) cloexec=true (kept from the worker's)", l, addr)
	}
	if l := w.line(); l != "listen: ok" {
		t.Errorf("listen on the master's socket: %q", l)
	}
	if l := w.line(); !strings.HasPrefix(l, "bind udp4 127.0.0.1:"+port+": ok") || field(l, "ino") == strconv.FormatUint(want, 10) {
		t.Errorf("UDP bind on a TCP listener's port: %q, want its own socket bound", l)
	}
	l = w.line()
	if !strings.HasPrefix(l, "bind tcp4 127.0.0.1:0: ok") || field(l, "ino") == strconv.FormatUint(want, 10) || field(l, "name") == addr.String() {
		t.Errorf("bind of port 0: %q, want its own socket on a port of its own", l)
	}
	if l := w.line(); l != "listen: ok" {
		t.Errorf("listen on its own socket: %q", l)
	}
	if l := w.line(); !strings.HasPrefix(l, "bind tcp4 "+busy+": EADDRINUSE") {
		t.Errorf("bind of an address in use: %q, want EADDRINUSE", l)
	}
	if l := w.line(); !strings.HasPrefix(l, "bind tcp4 127.0.0.1:"+port+": ok") || field(l, "ino") != strconv.FormatUint(want, 10) {
		t.Errorf("bind from a thread that is not the leader: %q, want the master's socket", l)
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("binder: %v", err)
	}
	<-w.ran // the filter has no user left: Run returns by itself
	ev := w.ev.snapshot()
	if len(ev.installed) != 1 || ev.installed[0] {
		t.Errorf("installed %v, want once without no_new_privs (root)", ev.installed)
	}
	if want := []string{"0 0.0.0.0:" + port, "0 127.0.0.1:" + port}; fmt.Sprint(ev.bound) != fmt.Sprint(want) {
		t.Errorf("bound %q, want %q", ev.bound, want)
	}
	if fmt.Sprint(ev.listened) != "[0]" {
		t.Errorf("listened %v, want [0] (not the worker's own socket)", ev.listened)
	}
	if fmt.Sprint(ev.inUse) != "["+busy+"]" {
		t.Errorf("in use %v, want [%s]", ev.inUse, busy)
	}
	if len(ev.failed) > 0 {
		t.Errorf("failed: %v", ev.failed)
	}
}

// unixListener binds a listening unix socket at path, as the master does.
func unixListener(t *testing.T, path string) *os.File {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), path)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestBindOfAUnixListenerPath(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	dir := t.TempDir()
	path := dir + "/app.sock"
	app := unixListener(t, path)
	other := dir + "/other.sock"
	w := startWorker(t, start{sockets: []*os.File{app}, dir: dir},
		"unix", "app.sock", "listen", // relative to its working directory
		"unix", path, // absolute
		"unix", other, // another path: its own
	)
	want := strconv.FormatUint(inode(t, app), 10)
	for _, p := range []string{"app.sock", path} {
		if l := w.line(); !strings.HasPrefix(l, "bind unix "+p+": ok") || field(l, "ino") != want {
			t.Errorf("bind of %s: %q, want the master's socket (inode %s)", p, l, want)
		}
		if p == "app.sock" {
			if l := w.line(); l != "listen: ok" {
				t.Errorf("listen: %q", l)
			}
		}
	}
	if l := w.line(); !strings.HasPrefix(l, "bind unix "+other+": ok") || field(l, "ino") == want {
		t.Errorf("bind of another path: %q, want its own socket", l)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("the worker's own socket file: %v", err)
	}
	w.cmd.Wait()
	<-w.ran
	ev := w.ev.snapshot()
	if want := []string{"0 " + path, "0 " + path}; fmt.Sprint(ev.bound) != fmt.Sprint(want) {
		t.Errorf("bound %q, want %q", ev.bound, want)
	}
	if fmt.Sprint(ev.listened) != "[0]" {
		t.Errorf("listened %v, want [0]", ev.listened)
	}
}

// Everything but bind and listen runs untouched: the Go runtime's own
// start (mmap, clone, futex, rt_sigaction…), and a binder's socket,
// fstat, fcntl and getsockname. Only the bind and listen steps notify.
func TestFilterNotifiesOnlyBindAndListen(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	var mu sync.Mutex
	var nrs []int32
	testHookNotif = func(nr int32) { mu.Lock(); nrs = append(nrs, nr); mu.Unlock() }
	defer func() { testHookNotif = nil }()
	w := startWorker(t, start{}, "tcp4", "127.0.0.1:0", "listen", "udp4", "127.0.0.1:0", "thread", "tcp4", "127.0.0.1:0", "listen")
	for range 5 {
		if l := w.line(); !strings.Contains(l, ": ok") {
			t.Errorf("step: %q", l)
		}
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	<-w.ran
	mu.Lock()
	defer mu.Unlock()
	want := []int32{unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_BIND, unix.SYS_BIND, unix.SYS_LISTEN}
	if fmt.Sprint(nrs) != fmt.Sprint(want) {
		t.Errorf("notified system calls %v, want %v (bind=%d listen=%d)", nrs, want, unix.SYS_BIND, unix.SYS_LISTEN)
	}
}

// A sandbox whose seccomp profile refuses filters: the shim says why, and
// the worker runs as it would without interception.
func TestSandboxRefusingFiltersFallsBack(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	web, addr := listenerSocket(t, "tcp", "127.0.0.1:0")
	w := startWorker(t, start{sockets: []*os.File{web}, env: []string{"SANDBOX=filter"}}, "tcp4", addr.String())
	if l := w.line(); !strings.HasPrefix(l, "bind tcp4 "+addr.String()+": EADDRINUSE") {
		t.Errorf("bind without interception: %q, want the kernel's EADDRINUSE", l)
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	<-w.ran
	ev := w.ev.snapshot()
	if len(ev.failed) != 1 || !strings.Contains(ev.failed[0].Error(), "load the seccomp filter: operation not permitted") {
		t.Errorf("failed %v, want the filter refused with EPERM", ev.failed)
	}
	if len(ev.installed)+len(ev.bound) > 0 {
		t.Errorf("installed %v, bound %v: want neither", ev.installed, ev.bound)
	}
}

// A shim without CAP_SYS_ADMIN (here root without it in its bounding set,
// as a non-root master's workers are) sets no_new_privs to load the
// filter, and says so.
func TestShimWithoutCapSysAdminSetsNoNewPrivs(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil || os.Getuid() != 0 {
		t.Skip("needs root and setpriv (util-linux) to drop CAP_SYS_ADMIN")
	}
	web, addr := listenerSocket(t, "tcp", "127.0.0.1:0")
	w := startWorker(t, start{sockets: []*os.File{web}, wrap: []string{setpriv, "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"}},
		"tcp4", addr.String(), "nnp")
	if l := w.line(); !strings.HasPrefix(l, "bind tcp4 "+addr.String()+": ok") {
		t.Errorf("bind: %q", l)
	}
	if l := w.line(); l != "NoNewPrivs: 1" {
		t.Errorf("the worker's status: %q, want NoNewPrivs: 1", l)
	}
	w.cmd.Wait()
	<-w.ran
	if ev := w.ev.snapshot(); fmt.Sprint(ev.installed) != "[true]" || len(ev.failed) > 0 {
		t.Errorf("installed %v failed %v, want once with no_new_privs", ev.installed, ev.failed)
	}
}

// A thread that dies while the master reads its address (its PID free to
// be reused) gets nothing done on its behalf: the notification is checked
// after the read.
func TestNotificationOfADeadThreadIsDropped(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	web, addr := listenerSocket(t, "tcp", "127.0.0.1:0")
	read, release := make(chan struct{}), make(chan struct{})
	testHookRead = func() { close(read); <-release }
	defer func() { testHookRead = nil }()
	w := startWorker(t, start{sockets: []*os.File{web}}, "tcp4", addr.String())
	<-read
	w.cmd.Process.Kill()
	w.cmd.Wait() // reaped: the notification is void
	close(release)
	<-w.ran
	if ev := w.ev.snapshot(); len(ev.bound)+len(ev.listened)+len(ev.inUse)+len(ev.failed) > 0 {
		t.Errorf("after the worker died: bound %v listened %v in use %v failed %v, want nothing", ev.bound, ev.listened, ev.inUse, ev.failed)
	}
}

// Once the supervisor is closed (the master stopped it, or died), a bind
// fails with ENOSYS instead of waiting.
func TestBindAfterCloseFailsWithENOSYS(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	web, addr := listenerSocket(t, "tcp", "127.0.0.1:0")
	w := startWorker(t, start{sockets: []*os.File{web}}, "wait", "tcp4", addr.String())
	deadline := time.After(timeout)
	for len(w.ev.snapshot().installed) == 0 {
		select {
		case <-w.ev.changed:
		case <-deadline:
			t.Fatal("the shim never reported its filter")
		}
	}
	w.sup.Close()
	<-w.ran
	fmt.Fprintln(w.stdin)
	if l := w.line(); !strings.HasPrefix(l, "bind tcp4 "+addr.String()+": ENOSYS") {
		t.Errorf("bind with no supervisor: %q, want ENOSYS", l)
	}
}

// BenchmarkBind reports what a bind costs a worker with the filter (the
// round trip to the supervisor, which lets it continue) and without: a
// socket, a bind of 127.0.0.1:0 and a close, in a loop.
func BenchmarkBind(b *testing.B) {
	if err := Available(); err != nil {
		b.Skipf("this kernel or sandbox: %v", err)
	}
	for _, filter := range []bool{false, true} {
		name := "without"
		if filter {
			name = "with"
		}
		b.Run(name+" the filter", func(b *testing.B) {
			self, _ := os.Executable()
			n := strconv.Itoa(max(b.N, 1000))
			var out []byte
			var err error
			if filter {
				ours, theirs, perr := Pair()
				if perr != nil {
					b.Fatal(perr)
				}
				sup, _ := NewSupervisor(ours, nil, nil, Callbacks{})
				done := make(chan struct{})
				go func() { defer close(done); sup.Run() }()
				cmd := exec.Command(self, "loop", n)
				cmd.Env = append(os.Environ(), testroles.Env+"="+roles.Use("shim"), "GORACE=atexit_sleep_ms=0")
				cmd.ExtraFiles = []*os.File{theirs}
				out, err = cmd.Output()
				theirs.Close()
				sup.Close()
				<-done
			} else {
				cmd := exec.Command(self, "loop", n)
				cmd.Env = append(os.Environ(), testroles.Env+"="+roles.Use("binder"), "GORACE=atexit_sleep_ms=0")
				out, err = cmd.Output()
			}
			if err != nil {
				b.Fatal(err)
			}
			ns, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(string(out)), "loop: "), " ns"), 64)
			b.ReportMetric(ns, "ns/bind")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// A datagram listener serves once a bind got it: that is its "listening".
func TestBindOfADatagramListenerIsListening(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("this kernel or sandbox: %v", err)
	}
	dns, addr := listenerSocket(t, "udp", "127.0.0.1:0")
	w := startWorker(t, start{sockets: []*os.File{dns}}, "udp4", addr.String())
	if l := w.line(); !strings.HasPrefix(l, "bind udp4 "+addr.String()+": ok") || field(l, "ino") != strconv.FormatUint(inode(t, dns), 10) {
		t.Errorf("UDP bind: %q, want the master's socket", l)
	}
	w.cmd.Wait()
	<-w.ran
	if ev := w.ev.snapshot(); fmt.Sprint(ev.bound, ev.listened) != "[0 "+addr.String()+"] [0]" {
		t.Errorf("bound %v listened %v, want the listener bound and listening", ev.bound, ev.listened)
	}
}
