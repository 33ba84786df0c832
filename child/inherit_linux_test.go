package child

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Environment of the helper roles in this file.
const (
	envNextRole = "HOTCLUSTER_TEST_NEXT_ROLE" // what the shim execs into
	envAddr     = "HOTCLUSTER_TEST_ADDR"      // the address the parent bound
)

func init() {
	registerRole("shim", roleShim)
	registerRole("worker", roleWorker)
	registerRole("pid-mismatch", rolePIDMismatch)
}

// roleShim does what hotcluster's own shim does: it sets LISTEN_PID to its
// PID and execs the next role, which keeps the PID and the descriptors.
func roleShim() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	os.Setenv(envRole, os.Getenv(envNextRole))
	os.Unsetenv(envNextRole)
	err = syscall.Exec(exe, []string{exe}, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 2
}

// workerReport is what the worker role found, served on /report.
type workerReport struct {
	Names      []string
	CloseExec  map[int]bool // fd flags right after the environment was read
	MissingErr string       // Listen("nope")
	WebAddr    string
	EnvLeft    []string // protocol variables still in the environment
	Generation int
	WorkerID   int
	Workers    int
}

// roleWorker takes "web" by name and the first datagram socket, leaves
// "spare" alone, serves /report and a UDP echo, and drains on SIGTERM.
func roleWorker() int {
	var r workerReport
	r.Names = Names()
	r.CloseExec = map[int]bool{}
	for fd := 3; fd <= 5; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		r.CloseExec[fd] = err == nil && flags&unix.FD_CLOEXEC != 0
	}
	for _, k := range []string{"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET"} {
		if _, ok := os.LookupEnv(k); ok {
			r.EnvLeft = append(r.EnvLeft, k)
		}
	}
	r.Generation, r.WorkerID, r.Workers = Generation(), WorkerID(), Workers()
	if _, err := Listen("nope", "tcp", "127.0.0.1:0"); err != nil {
		r.MissingErr = err.Error()
	}
	ln, err := Listen("web", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r.WebAddr = ln.Addr().String()
	pc, err := ListenPacket("", "udp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pc.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/report", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(r)
	})
	if err := ServeHTTP(context.Background(), &http.Server{Handler: mux}, ln, Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestInheritedSockets runs a worker the way the master does: three sockets
// on fds 3 to 5, names, LISTEN_PID set by a shim, a notify socket.
func TestInheritedSockets(t *testing.T) {
	t.Parallel()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	web := listenTCP(t)
	spare := listenTCP(t)
	notify := listenNotify(t)

	cmd := roleCommand(t, "shim", envNextRole+"="+useRole("worker"),
		"LISTEN_FDS=3", "LISTEN_FDNAMES=udp:web:spare", "NOTIFY_SOCKET="+notify.LocalAddr().String(),
		"HOTCLUSTER_GENERATION=7", "HOTCLUSTER_WORKER_ID=1", "HOTCLUSTER_WORKERS=2")
	cmd.ExtraFiles = []*os.File{dupFile(t, udp.(syscall.Conn)), dupFile(t, web.(syscall.Conn)), dupFile(t, spare.(syscall.Conn))}
	exited := startCommand(t, cmd)
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}

	expectNotify(t, notify, "STATUS=starting", exited)
	// ServeHTTP says with its READY=1 that it drains keep-alive itself.
	expectNotify(t, notify, "READY=1\nX_HOTCLUSTER_DRAINS=keep-alive", exited)

	// Ready closed the unused socket: the worker holds no descriptor of it.
	held := socketInodes(t, cmd.Process.Pid)
	if !held[inode(t, web.(syscall.Conn))] || !held[inode(t, udp.(syscall.Conn))] {
		t.Errorf("worker does not hold the web and udp sockets; it holds inodes %v", held)
	}
	if held[inode(t, spare.(syscall.Conn))] {
		t.Errorf("worker still holds the unused socket after Ready")
	}

	var r workerReport
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + web.Addr().String() + "/report")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(r.Names, ":"), "udp:web:spare"; got != want {
		t.Errorf("Names() = %s, want %s", got, want)
	}
	for fd, cloexec := range r.CloseExec {
		if !cloexec {
			t.Errorf("inherited fd %d is not close-on-exec", fd)
		}
	}
	if len(r.EnvLeft) > 0 {
		t.Errorf("variables left in the worker's environment: %v", r.EnvLeft)
	}
	if r.WebAddr != web.Addr().String() {
		t.Errorf(`Listen("web") has address %s, want %s`, r.WebAddr, web.Addr())
	}
	for _, name := range []string{`"nope"`, `"udp"`, `"web"`, `"spare"`} {
		if !strings.Contains(r.MissingErr, name) {
			t.Errorf("Listen(nope) error %q does not mention %s", r.MissingErr, name)
		}
	}
	if r.Generation != 7 || r.WorkerID != 1 || r.Workers != 2 {
		t.Errorf("Generation, WorkerID, Workers = %d, %d, %d; want 7, 1, 2", r.Generation, r.WorkerID, r.Workers)
	}

	udpClient, err := net.Dial("udp", udp.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer udpClient.Close()
	udpClient.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := udpClient.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := udpClient.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Errorf("udp echo = %q, %v; want ping", buf[:n], err)
	}

	for _, c := range []syscall.Conn{web.(syscall.Conn), spare.(syscall.Conn), udp.(syscall.Conn)} {
		checkNonblock(t, c)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectNotify(t, notify, "STOPPING=1", exited)
	if err := waitExit(t, exited); err != nil {
		t.Fatalf("worker: %v\n%s", err, cmd.Stderr)
	}
	for _, c := range []syscall.Conn{web.(syscall.Conn), spare.(syscall.Conn), udp.(syscall.Conn)} {
		checkNonblock(t, c)
	}
}

// rolePIDMismatch gets sockets whose LISTEN_PID is not its own: it must leave
// them alone and listen by itself.
func rolePIDMismatch() int {
	out := map[string]any{"names": Names()}
	ln, err := Listen("web", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ln.Close()
	out["addr"] = ln.Addr().String()
	flags, err := unix.FcntlInt(3, unix.F_GETFD, 0)
	out["fd3Open"] = err == nil
	out["fd3CloseExec"] = err == nil && flags&unix.FD_CLOEXEC != 0
	_, out["listenFdsLeft"] = os.LookupEnv("LISTEN_FDS")
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

func TestListenPIDMismatch(t *testing.T) {
	t.Parallel()
	web := listenTCP(t)
	cmd := roleCommand(t, useRole("pid-mismatch"), "LISTEN_FDS=1", "LISTEN_FDNAMES=web", "LISTEN_PID=1")
	cmd.ExtraFiles = []*os.File{dupFile(t, web.(syscall.Conn))}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	exited := startCommand(t, cmd)
	cmd.ExtraFiles[0].Close()
	if err := waitExit(t, exited); err != nil {
		t.Fatalf("role: %v\n%s", err, cmd.Stderr)
	}
	var out struct {
		Names         []string
		Addr          string
		Fd3Open       bool
		Fd3CloseExec  bool
		ListenFdsLeft bool
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%v: %s", err, stdout.Bytes())
	}
	if out.Names != nil || out.Addr == web.Addr().String() || !out.Fd3Open || out.Fd3CloseExec || out.ListenFdsLeft {
		t.Errorf("got %+v; want no names, a new address, fd 3 open and untouched, LISTEN_FDS unset", out)
	}
	checkNonblock(t, web.(syscall.Conn))
}

// roleCommand returns a command that re-executes the test binary as role.
// Its stderr is collected into a buffer for messages.
func roleCommand(t *testing.T, role string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envRole+"="+useRole(role))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = new(bytes.Buffer)
	return cmd
}

// startCommand starts cmd and returns a channel that receives its Wait
// result. Cleanup kills the process if it still runs and waits for it.
func startCommand(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	reaped := make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(reaped)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-reaped:
		case <-time.After(10 * time.Second):
			t.Errorf("process %d not reaped", cmd.Process.Pid)
		}
	})
	return exited
}

func waitExit(t *testing.T, exited <-chan error) error {
	t.Helper()
	select {
	case err := <-exited:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("process did not exit within 20 s")
		return nil
	}
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	addr := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "notify"), Net: "unixgram"}
	c, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectNotify reads the next notify message, failing if it is not want or if
// the process exits first.
func expectNotify(t *testing.T, c *net.UnixConn, want string, exited <-chan error) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			got <- "read error: " + err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	select {
	case msg := <-got:
		if msg != want {
			t.Fatalf("notify message %q, want %q", msg, want)
		}
	case err := <-exited:
		t.Fatalf("process exited before sending %q: %v", want, err)
	}
}

// dupFile duplicates the socket's descriptor close-on-exec through
// SyscallConn, as the master does: (*net.TCPListener).File would clear
// O_NONBLOCK on the description the test keeps using.
func dupFile(t *testing.T, c syscall.Conn) *os.File {
	t.Helper()
	var fd int
	control(t, c, func(s uintptr) error {
		var err error
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	return os.NewFile(uintptr(fd), "dup")
}

func checkNonblock(t *testing.T, c syscall.Conn) {
	t.Helper()
	control(t, c, func(s uintptr) error {
		flags, err := unix.FcntlInt(s, unix.F_GETFL, 0)
		if err == nil && flags&unix.O_NONBLOCK == 0 {
			t.Errorf("socket lost O_NONBLOCK")
		}
		return err
	})
}

func inode(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	var st unix.Stat_t
	control(t, c, func(s uintptr) error { return unix.Fstat(int(s), &st) })
	return st.Ino
}

func control(t *testing.T, c syscall.Conn, fn func(uintptr) error) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := raw.Control(func(s uintptr) { ferr = fn(s) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
}

// socketInodes returns the inodes of the sockets process pid holds.
func socketInodes(t *testing.T, pid int) map[uint64]bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	held := map[uint64]bool{}
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		var ino uint64
		if _, err := fmt.Sscanf(link, "socket:[%d]", &ino); err == nil {
			held[ino] = true
		}
	}
	return held
}
