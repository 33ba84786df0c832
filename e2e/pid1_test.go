package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// pid1Master is a master started as PID 1 of a PID namespace of its own,
// as in a container without an init: `unshare --pid --fork --mount-proc`.
type pid1Master struct {
	*master
	inner int    // the master's PID outside its namespace
	ns    string // its PID namespace, as /proc/PID/ns/pid reads
}

// startPID1 starts `hotcluster run ARGS` (workers of role) as PID 1 of a
// new PID namespace, or skips where this machine cannot make one.
func startPID1(t *testing.T, role string, args ...string) *pid1Master {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace of its own needs root (unshare --pid)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1): util-linux makes PID namespaces")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"--pid", "--fork", "--mount-proc", self, "run", "--env", roleEnv + "=" + role}, args...)
	full = append(full, "--", self)
	cmd := exec.Command(unshare, full...)
	cmd.Env = append(os.Environ(), masterEnv(t)...)
	m := &pid1Master{master: startMasterCmd(t, cmd)}
	// unshare forks the master and waits for it; it ignores SIGTERM
	// itself, which is why the master is signalled directly.
	eventually(t, "unshare has forked the master", func() bool {
		kids := children(m.pid)
		if len(kids) != 1 {
			return false
		}
		m.inner = kids[0]
		return true
	})
	m.waitLine(0, `serving \(master pid 1\)`)
	m.ns, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.inner))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *pid1Master) signalInner(sig syscall.Signal) {
	m.t.Helper()
	if err := syscall.Kill(m.inner, sig); err != nil {
		m.t.Fatalf("signal the master: %v", err)
	}
}

// inNamespace lists the processes (host PIDs) of the master's namespace,
// zombies included, and which of them are zombies.
func (m *pid1Master) inNamespace() (pids []int, zombies []int) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if ns, err := os.Readlink(d + "/ns/pid"); err == nil && ns == m.ns {
			pid, _ := strconv.Atoi(filepath.Base(d))
			pids = append(pids, pid)
			if zombie(pid) {
				zombies = append(zombies, pid)
			}
		}
	}
	return pids, zombies
}

// As PID 1 (docker run img hotcluster run …, a pod without an init): the
// workers serve, a reload under load fails no request, an orphan a worker
// left is reaped when it exits (no zombie stays), and SIGTERM drains,
// kills what is left and exits 0, with nothing left in the namespace.
func TestMasterAsPID1(t *testing.T) {
	for _, mode := range cgroupModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			testMasterAsPID1(t, mode.name, mode.args)
		})
	}
}

func testMasterAsPID1(t *testing.T, mode string, extra []string) {
	tag := fmt.Sprintf("pid1%s%d", mode, os.Getpid())
	roles.Use("detach")
	roles.Use("daemon")
	m := startPID1(t, "orphaner", append([]string{"--workers", "2", "--listen", "web=127.0.0.1:0",
		"--env", "ORPHANS=2", "--env", "ORPHAN_TAG=" + tag}, extra...)...)
	m.waitLine(0, `leftovers: PID 1 of its namespace`)
	addr := m.listenAddr("web")
	m.waitLine(0, `gen 1 ready in`)
	assertServedBy(t, "tcp", addr, 1)

	// Each worker of generation 1 left two daemons, which came back to
	// PID 1; one of them is told to exit.
	var gen1 []int
	eventually(t, "4 orphans, children of PID 1", func() bool {
		gen1 = namedLike("hc-orphan-" + tag + "-")
		for _, pid := range gen1 {
			if parent(pid) != m.inner {
				return false
			}
		}
		return len(gen1) == 4
	})
	syscall.Kill(gen1[0], syscall.SIGTERM)
	gone(t, "the orphan, reaped by PID 1", gen1[0])
	if _, zs := m.inNamespace(); len(zs) != 0 {
		t.Errorf("zombies in the namespace: %v", zs)
	}

	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	m.signalInner(syscall.SIGHUP)
	m.waitLine(0, `gen 2 ready in`)
	m.waitLine(0, `gen 1 drained`)
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 2)
	// The orphans of generation 1 went with their workers.
	for _, pid := range gen1[1:] {
		gone(t, "an orphan of generation 1", pid)
	}

	// What generation 2 left is killed by the master as each worker
	// exits, before the kernel would at PID 1's exit.
	m.signalInner(syscall.SIGTERM)
	m.waitLine(0, `gen 2 worker \d \(pid \d+\) exited: killed what it left in its cgroup|killed pid \d+ \(\S+\), left by gen 2 worker`)
	if code := m.wait(); code != 0 {
		t.Fatalf("master (PID 1) exited %d, want 0", code)
	}
	if n := m.count(`hotcluster-shim: `); n != 0 {
		t.Errorf("%d shim failures", n)
	}
	// PID 1 has exited: the kernel has torn the namespace down. What the
	// master stopped itself it had also reaped.
	eventually(t, "the namespace is empty", func() bool { ps, _ := m.inNamespace(); return len(ps) == 0 })
}

// As PID 1 an upgrade cannot work (its exit would end the namespace, the
// new master with it): it is refused, and the master serves on.
func TestPID1RefusesUpgrade(t *testing.T) {
	t.Parallel()
	m := startPID1(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.signalInner(syscall.SIGUSR2)
	m.waitLine(0, `SIGUSR2: upgrade refused: this master is PID 1 of its PID namespace`)
	assertServedBy(t, "tcp", addr, 1)
	if n := m.count(`upgrade: `); n != 0 {
		t.Errorf("an upgrade was attempted:\n%s", strings.Join(m.output(), "\n"))
	}
}

// namedLike lists the processes whose argv[0] starts with prefix.
func namedLike(prefix string) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if b, err := os.ReadFile(d + "/cmdline"); err == nil && strings.HasPrefix(string(b), prefix) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			out = append(out, pid)
		}
	}
	return out
}
