package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/e2e/internal/testkit"
	"github.com/hotcluster/hotcluster/internal/testroles"
	"golang.org/x/sys/unix"
)

// A reload needs descriptors for two generations at once. Before the
// pool starts one it makes sure they are there: as root it raises its own
// limit (and its workers keep theirs); a master that may not fails the
// reload before it forks anything, saying how many it needs and what to
// change, and the serving generation goes on. Without the look ahead a
// reload of 2,048 workers failed at worker 804 with "too many open files".
func TestReloadReservesDescriptors(t *testing.T) {
	const workers = 40
	if os.Geteuid() != 0 {
		t.Skip("needs root: one case raises a hard limit, the other drops a capability of root's")
	}
	canRaise := hasCapability(t, unix.CAP_SYS_RESOURCE)
	for _, tc := range []struct {
		name  string
		raise bool
	}{
		{name: "raised", raise: true}, // as root with CAP_SYS_RESOURCE
		{name: "refused"},             // without CAP_SYS_RESOURCE the reload fails first
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.raise && !canRaise {
				t.Skip("this machine's root has no CAP_SYS_RESOURCE (a container's often has not): no hard limit can be raised")
			}
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"hotcluster", "run", "--log-time=false", "--workers", strconv.Itoa(workers), "--listen", "web=127.0.0.1:0",
				"--env", roleEnv + "=lib", "--", self}
			cmd := exec.Command(self)
			cmd.Args = args
			if !tc.raise && canRaise {
				setpriv := testroles.Tool(t, "setpriv")
				cmd = exec.Command(setpriv, append([]string{"--bounding-set=-sys_resource", "--", self}, args[1:]...)...)
			}
			cmd.Env = append(os.Environ(), masterEnv(t)...)
			m := startMasterCmd(t, cmd)
			m.waitReady(1)
			addr := m.listenAddr("web")

			// Room for what the master holds now and a little more, not
			// for 40 more workers.
			open := countFDs(t, m.pid)
			lim := unix.Rlimit{Cur: uint64(open + 100), Max: uint64(open + 100)}
			if err := unix.Prlimit(m.pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
				t.Fatal(err)
			}
			m.signal(syscall.SIGHUP)
			if !tc.raise {
				e, _ := m.WaitEvent(0, "gen 2 failed", testkit.Is("reload-failed", 2))
				for _, want := range []string{"needs about", fmt.Sprintf("for %d workers", workers), "LimitNOFILE=", "ulimit -n"} {
					if !strings.Contains(e.Error, want) {
						t.Errorf("reload-failed says %q, without %q", e.Error, want)
					}
				}
				for _, e := range m.Events() {
					if e.Event == "fork" && e.Generation == 2 {
						t.Errorf("a worker of gen 2 was started before the reload failed: %+v", e)
					}
				}
				assertServedBy(t, "tcp", addr, 1)
				return
			}
			m.WaitEvent(0, "gen 2 ready", testkit.Is("reload-done", 2))
			m.waitLine(0, `open files: raised the limit from \d+ to \d+ for 40 workers`)
			m.waitDrained(1)
			assertServedBy(t, "tcp", addr, 2)
			var now unix.Rlimit
			if err := unix.Prlimit(m.pid, unix.RLIMIT_NOFILE, nil, &now); err != nil {
				t.Fatal(err)
			}
			if now.Cur <= lim.Cur {
				t.Errorf("the master's limit is %d, not raised above %d", now.Cur, lim.Cur)
			}
			// The workers keep the limit the master started with.
			for _, pid := range workerPIDs(m, 2) {
				var w unix.Rlimit
				if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &w); err != nil {
					t.Fatal(err)
				}
				if w.Cur == now.Cur {
					t.Errorf("worker %d has the master's raised soft limit %d", pid, w.Cur)
				}
			}
		})
	}
}

func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// hasCapability reports whether this process has capability c in its
// effective set.
func hasCapability(t *testing.T, c int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			bits, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return bits&(1<<c) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}
