package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
	"golang.org/x/sys/unix"
)

// The service manager binds and hands the socket in (systemd's own tool for
// socket activation): the master starts on the first connection, serves that
// connection, and uses the socket instead of binding.
func TestSocketActivationBySystemd(t *testing.T) {
	t.Parallel()
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skipf("systemd-socket-activate is not installed here: %v", err)
	}
	self, _ := os.Executable()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	// It passes only the variables named with -E.
	cmd := exec.Command(sa, "-l", addr, "--fdname=web")
	for _, kv := range masterEnv(t) {
		cmd.Args = append(cmd.Args, "-E", kv)
	}
	cmd.Args = append(cmd.Args, self, "run", "--env", roleEnv+"=lib", "--workers", "2", "--listen", "web=127.0.0.1:0", "--", self)
	m := startMasterCmd(t, cmd)
	m.waitLine(0, `^Listening on `+regexpQuote(addr))
	// Nothing runs yet: the first connection starts the master.
	body, err := get("tcp", addr, "/")
	if err != nil || !strings.Contains(body, "gen=1") {
		t.Fatalf("first request: %q, %v", body, err)
	}
	m.waitLine(0, `listening on `+regexpQuote(addr)+` as web \(shared: socket from systemd without ReusePort=yes\)`)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	for gen := 2; gen <= 3; gen++ {
		m.reload(gen)
	}
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 3)
}

// A socket handed in with SO_REUSEPORT (systemd's ReusePort=yes) is steered:
// even a worker that calls a plain Shutdown loses nothing on reload.
func TestSocketActivationWithReusePortIsSteered(t *testing.T) {
	t.Parallel()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	self, _ := os.Executable()
	// LISTEN_PID must be the master's PID: a shell sets it and execs.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" "$@"`,
		self, "run", "--env", roleEnv+"=plain", "--workers", "2", "--listen", "web=127.0.0.1:1", "--", self)
	cmd.Env = append(os.Environ(), masterEnv(t)...)
	cmd.ExtraFiles = []*os.File{f}
	m := startMasterCmd(t, cmd)
	// Matched by name although the address differs.
	m.waitLine(0, `listening on `+regexpQuote(addr)+` as web \(steered, (ebpf|cbpf)`)
	m.waitReady(1)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 8})
	for gen := 2; gen <= 6; gen++ {
		m.reload(gen)
	}
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 6)
}
