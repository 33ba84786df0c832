package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quotaCgroup makes a cgroup of the test's own with a CPU quota of cpus
// CPUs, in the v1 cpu hierarchy (v1) or the unified one (!v1), and removes it
// once the test's processes have left it. It skips where the machine has
// no such hierarchy or the test may not make one: a platform limit, named.
func quotaCgroup(t *testing.T, v1 bool, cpus int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making a cgroup with a CPU quota needs root")
	}
	quota := strconv.Itoa(cpus * 100000)
	top, files := "/sys/fs/cgroup/unified", map[string]string{"cpu.max": quota + " 100000"}
	if v1 {
		top = "/sys/fs/cgroup/cpu"
		files = map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": quota}
	} else if _, err := os.Stat(top); err != nil {
		top = "/sys/fs/cgroup" // pure v2
	}
	switch {
	case v1:
		if _, err := os.Stat(filepath.Join(top, "cpu.cfs_quota_us")); err != nil {
			t.Skipf("no v1 cpu hierarchy at %s: %v", top, err)
		}
	default:
		b, err := os.ReadFile(filepath.Join(top, "cgroup.subtree_control"))
		if err != nil || !slices.Contains(strings.Fields(string(b)), "cpu") {
			t.Skipf("the v2 hierarchy at %s has no cpu controller for its children (%q, %v): on this machine cpu is a v1 controller", top, b, err)
		}
	}
	dir := filepath.Join(top, fmt.Sprintf("hotcluster-e2e-quota-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The masters' cleanup ran before (it was registered later): every
		// process of the test has left by now, but the kernel may take a
		// moment to notice the last exit.
		deadline := time.Now().Add(testTimeout)
		for {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
				t.Errorf("remove %s: %v (processes: %q)", dir, err, b)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	for _, name := range []string{"cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.max"} {
		if v, ok := files[name]; ok {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
				t.Fatalf("write %s: %v", name, err)
			}
		}
	}
	return dir
}

// startInCgroup starts `hotcluster run ARGS` (worker role role) as a
// process of cgroup dir from its first instruction: a shell moves itself
// there and execs the master.
func startInCgroup(t *testing.T, dir, role string, args ...string) *master {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir, self, "run", "--env", roleEnv + "=" + role}, args...)
	full = append(full, "--", self)
	cmd := exec.Command("/bin/sh", full...)
	cmd.Env = append(os.Environ(), masterEnv(t)...)
	return startMasterCmd(t, cmd)
}

func TestWorkersFromTheCPUQuotaV1(t *testing.T) { testWorkersFromTheCPUQuota(t, true, 2) }
func TestWorkersFromTheCPUQuotaV2(t *testing.T) { testWorkersFromTheCPUQuota(t, false, 2) }

// A quota below the CPU count (on a machine of 2 CPUs, a 2-CPU quota gives
// the CPU count too): 1 CPU gives 1 worker.
func TestWorkersFromASmallCPUQuota(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("a quota below the CPU count needs 2 CPUs or more")
	}
	testWorkersFromTheCPUQuota(t, true, 1)
}

// testWorkersFromTheCPUQuota: without --workers, a master in a cgroup
// limited to cpus CPUs runs that many workers, whatever the machine's CPU
// count, and says why.
func testWorkersFromTheCPUQuota(t *testing.T, v1 bool, cpus int) {
	t.Parallel()
	dir := quotaCgroup(t, v1, cpus)
	m := startInCgroup(t, dir, "lib", "--listen", "web=127.0.0.1:0")
	sm, _ := m.waitLine(0, fmt.Sprintf(`(\d+) workers? per generation: the CPU quota of its cgroup, %d CPUs \((\S+): %d/100000 µs\)`, cpus, cpus*100000))
	if sm[1] != strconv.Itoa(cpus) || !strings.HasPrefix(sm[2], dir) {
		t.Fatalf("workers %s from %s, want %d from %s", sm[1], sm[2], cpus, dir)
	}
	m.waitLine(0, fmt.Sprintf(`gen 1 ready in \S+ \(%s\)`, workersN(cpus)))
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("master exited %d", code)
	}
}

func workersN(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}
