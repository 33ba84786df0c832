package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSystemd is a notify socket as systemd provides it; the test reads the
// master's messages from it.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
	path string
	msgs chan string
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSystemd{t: t, conn: c, path: path, msgs: make(chan string, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			f.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return f
}

// expect waits for a message holding every one of lines, skipping the
// messages before it that match skip (WATCHDOG=1 and STATUS= updates);
// any other message first fails the test.
func (f *fakeSystemd) expect(lines ...string) string {
	f.t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case m := <-f.msgs:
			ok := true
			for _, l := range lines {
				ok = ok && strings.Contains(m, l)
			}
			if ok {
				return m
			}
			if m == "WATCHDOG=1" || strings.HasPrefix(m, "STATUS=") {
				continue
			}
			f.t.Fatalf("notify message %q while waiting for %q", m, lines)
		case <-deadline:
			f.t.Fatalf("no notify message with %q", lines)
		}
	}
}

// expectSkipping waits for a message equal to want, skipping messages that
// start with skip (and watchdog pings).
func (f *fakeSystemd) expectSkipping(skip, want string) {
	f.t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case m := <-f.msgs:
			switch {
			case m == want:
				return
			case strings.HasPrefix(m, skip), m == "WATCHDOG=1":
			default:
				f.t.Fatalf("notify message %q while waiting for %q", m, want)
			}
		case <-deadline:
			f.t.Fatalf("no notify message %q", want)
		}
	}
}

func TestSystemdNotifySequence(t *testing.T) {
	t.Parallel()
	sd := newFakeSystemd(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := startCommandEnv(t, []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=200000"},
		[]string{"--env", roleEnv + "=crash-from-gen2", "--workers", "2", "--listen", "web=127.0.0.1:0"}, self)
	sd.expect("READY=1", "STATUS=serving gen 1 with 2 workers")
	sd.expect("WATCHDOG=1")

	// A reload that fails: RELOADING=1, then READY=1 with the reason.
	m.signal(syscall.SIGHUP)
	sd.expect("RELOADING=1", "MONOTONIC_USEC=", "STATUS=reloading: gen 2 starting, gen 1 serving")
	sd.expect("READY=1", "STATUS=reload failed: gen 2 worker", "exit status 3", "gen 1 keeps serving")

	m.signal(syscall.SIGTERM)
	sd.expect("STOPPING=1", "EXTEND_TIMEOUT_USEC=35000000")
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestSystemdNotifyReloadSucceeds(t *testing.T) {
	t.Parallel()
	sd := newFakeSystemd(t)
	self, _ := os.Executable()
	m := startCommandEnv(t, []string{"NOTIFY_SOCKET=" + sd.path},
		[]string{"--env", roleEnv + "=lib", "--workers", "1", "--listen", "web=127.0.0.1:0"}, self)
	sd.expect("READY=1", "STATUS=serving gen 1 with 1 workers")
	m.signal(syscall.SIGHUP)
	sd.expect("RELOADING=1", "MONOTONIC_USEC=")
	sd.expect("READY=1", "STATUS=serving gen 2 with 1 workers")
	// The workers saw their own notify socket, never the master's.
	for _, l := range m.output() {
		if strings.Contains(l, "CONTRACT") && strings.Contains(l, "NOTIFY_SOCKET="+sd.path) {
			t.Errorf("a worker got the master's NOTIFY_SOCKET: %s", l)
		}
	}
}

// After an upgrade the old master names the new one (MAINPID=) before it
// stops, and the new one, once main, says READY=1 again; the new master
// feeds the watchdog although WATCHDOG_PID named the old one.
func TestSystemdNotifyUpgrade(t *testing.T) {
	t.Parallel()
	sd := newFakeSystemd(t)
	self, _ := os.Executable()
	bin := filepath.Join(t.TempDir(), "hotcluster")
	copyFile(t, self, bin)
	cmd := exec.Command("/bin/sh", "-c", `WATCHDOG_PID=$$ exec "$0" "$@"`, bin, "run", "--env", roleEnv+"=lib",
		"--workers", "1", "--listen", "web=127.0.0.1:0", "--", self)
	cmd.Env = append(os.Environ(), append(masterEnv(t), "NOTIFY_SOCKET="+sd.path, "WATCHDOG_USEC=400000")...)
	m := startMasterCmd(t, cmd)
	sd.expect("READY=1", "STATUS=serving gen 1 with 1 workers")
	m.waitLine(0, `serving \(master pid`)
	m.signal(syscall.SIGUSR2)
	sm, _ := m.waitLine(0, `upgraded: master pid (\d+) took over`)
	// The new master's own READY=1 may come first: systemd ignores it then.
	sd.expectSkipping("READY=1", "MAINPID="+sm[1])
	sd.expect("READY=1", "STATUS=serving gen 2 with 1 workers")
	// Pings go on after the old master exited.
	eventually(t, "old master gone", func() bool { return !alive(m.pid) })
	// The new master's READY=1 after its Ready may come after MAINPID too.
	sd.expectSkipping("READY=1", "WATCHDOG=1")
}

// A reload that the config file refuses tells systemd why, in STATUS=.
func TestSystemdNotifyReloadRefused(t *testing.T) {
	t.Parallel()
	sd := newFakeSystemd(t)
	file := filepath.Join(t.TempDir(), "hotcluster.toml")
	if err := os.WriteFile(file, []byte("workers = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	m := startCommandEnv(t, []string{"NOTIFY_SOCKET=" + sd.path},
		[]string{"--config", file, "--env", roleEnv + "=lib", "--listen", "web=127.0.0.1:0"}, self)
	sd.expect("READY=1", "STATUS=serving gen 1 with 1 workers")
	if err := os.WriteFile(file, []byte("workers = \"two\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.signal(syscall.SIGHUP)
	sd.expect("STATUS=reload refused: " + file + `: key "workers": want an integer`)
}
