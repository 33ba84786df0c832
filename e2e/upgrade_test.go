package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// startCopiedMaster runs the master from a copy of the test binary, so that
// a test can replace "hotcluster's binary" under it.
func startCopiedMaster(t *testing.T, role string, args ...string) (*master, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "hotcluster")
	copyFile(t, self, bin)
	cmd := exec.Command(bin, append(append([]string{"run", "--env", roleEnv + "=" + role}, args...), "--", self)...)
	cmd.Env = append(os.Environ(), masterEnv(t)...)
	return startMasterCmd(t, cmd), bin
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := to + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// upgrade sends SIGUSR2 to master pid and waits until a new master took
// over and the old one exited; it returns the new master's PID.
func (m *master) upgrade(pid int, from int) (int, int) {
	m.t.Helper()
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		m.t.Fatal(err)
	}
	sm, next := m.waitLine(from, `upgraded: master pid (\d+) took over`)
	newPID, _ := strconv.Atoi(sm[1])
	eventually(m.t, fmt.Sprintf("old master %d gone", pid), func() bool { return !alive(pid) })
	// The new master may upgrade again once it has seen the old one go.
	_, next = m.waitLine(next, `the previous master has exited`)
	return newPID, next
}

// stopAt stops the master that now runs as pid and waits for every master
// of this test to be gone.
func (m *master) stopAt(pid int) {
	m.t.Helper()
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-m.eof:
	case <-time.After(testTimeout):
		m.t.Fatalf("master %d still running after SIGTERM", pid)
	}
}

func TestUpgradeUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	pidfile := filepath.Join(t.TempDir(), "master.pid")
	m, _ := startCopiedMaster(t, "plain", "--workers", "2", "--listen", "web=127.0.0.1:0", "--pidfile", pidfile)
	addr := m.listenAddr("web")
	// Upgrades are possible once the master serves (tableflip is ready).
	m.waitLine(0, `serving \(master pid`)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 8})
	pid, next := m.pid, 0
	for i := 0; i < 3; i++ {
		pid, next = m.upgrade(pid, next)
		if b, err := os.ReadFile(pidfile); err != nil || string(b) != strconv.Itoa(pid)+"\n" && string(b) != strconv.Itoa(pid) {
			t.Errorf("--pidfile holds %q (%v) after upgrade %d, want %d", b, err, i+1, pid)
		}
	}
	// Reloads still work on the new master, and numbers go on.
	syscall.Kill(pid, syscall.SIGHUP)
	m.waitLine(next, `gen 5 ready in`)
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 5)
	if n := m.count(`drained: exit status 0`); n < 6 {
		t.Errorf("%d workers drained, want the 6 of the three old masters", n)
	}
	m.stopAt(pid)
}

func TestUpgradeToBrokenBinaryKeepsServing(t *testing.T) {
	t.Parallel()
	m, bin := startCopiedMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	// Upgrades are possible once the master serves (tableflip is ready).
	m.waitLine(0, `serving \(master pid`)
	broken := filepath.Join(filepath.Dir(bin), "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho this binary is broken >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(broken, bin); err != nil {
		t.Fatal(err)
	}
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	m.signal(syscall.SIGUSR2)
	m.waitLine(0, `upgrade failed: .*exited.*; this master \(pid `+strconv.Itoa(m.pid)+`\) keeps serving`)
	os.Remove(bin)
	m.signal(syscall.SIGUSR2)
	m.waitLine(0, `upgrade failed: new binary: .*no such file or directory`)
	// Still the same master, and it still reloads.
	m.reload(2)
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 2)
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestSecondUpgradeWaitsForTheOldMaster(t *testing.T) {
	t.Parallel()
	m, _ := startCopiedMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	// Upgrades are possible once the master serves (tableflip is ready).
	m.waitLine(0, `serving \(master pid`)
	// A slow request keeps the old master draining.
	slow := make(chan error, 1)
	go func() { _, err := get("tcp", addr, "/slow?ms=3000"); slow <- err }()
	m.waitLine(0, `SLOW START`)
	m.signal(syscall.SIGUSR2)
	sm, next := m.waitLine(0, `upgraded: master pid (\d+) took over`)
	pid, _ := strconv.Atoi(sm[1])
	syscall.Kill(pid, syscall.SIGUSR2)
	m.waitLine(next, `upgrade failed: the previous master is still draining; upgrade again once it has exited`)
	if err := <-slow; err != nil {
		t.Fatalf("the slow request on the old master: %v", err)
	}
	eventually(t, "old master gone", func() bool { return !alive(m.pid) })
	m.waitLine(next, `the previous master has exited`)
	// Now it may.
	pid, _ = m.upgrade(pid, next)
	m.stopAt(pid)
}
