package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/signals"
)

// workerPID waits for the contract line of generation gen's worker in
// slot and returns its PID, never 0: a worker's line comes through the
// master's log pipe and may follow the master's "ready" line, and a test
// that signalled PID 0 would signal its own process group (a SIGSTOP
// there once stopped the whole test binary).
func workerPID(m *master, gen, slot int) int {
	m.t.Helper()
	sm, _ := m.waitLine(0, fmt.Sprintf(`\[g%d w%d\] CONTRACT pid=(\d+)`, gen, slot)) // after --log-time's time, if any
	pid, err := strconv.Atoi(sm[1])
	if err != nil || pid <= 0 {
		m.t.Fatalf("gen %d worker %d: contract line with pid %q", gen, slot, sm[1])
	}
	return pid
}

// workerPIDs returns the PIDs of the master's current workers, by slot, as
// the contract lines of generation gen printed so far report them.
func workerPIDs(m *master, gen int) map[string]int {
	pids := map[string]int{}
	rx := regexp.MustCompile(fmt.Sprintf(`^\[g%d w(\d+)\] CONTRACT pid=(\d+)`, gen))
	for _, l := range m.output() {
		if sm := rx.FindStringSubmatch(l); sm != nil {
			pids[sm[1]], _ = strconv.Atoi(sm[2])
		}
	}
	return pids
}

func TestKilledWorkerIsRespawned(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	victim := workerPID(m, 1, 1)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitLine(0, fmt.Sprintf(`gen 1 worker 1 \(pid %d\) exited: killed by signal SIGKILL .*; respawning in`, victim))
	_, next := m.waitLine(0, `respawning in`)
	sm, _ := m.waitLine(next, `^\[g1 w1\] CONTRACT pid=(\d+)`)
	if sm[1] == strconv.Itoa(victim) {
		t.Fatal("respawned worker has the old PID")
	}
	// Both slots answer again.
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		body, err := get("tcp", addr, "/")
		if err != nil {
			t.Fatal(err)
		}
		seen[regexp.MustCompile(`worker=(\d+)`).FindStringSubmatch(body)[1]] = true
	}
	if len(seen) != 2 {
		t.Errorf("answers came from workers %v, want 0 and 1", seen)
	}
}

func TestKilledMasterLeavesNoWorkerAndFreesThePort(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "3", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	m.reload(2)
	for slot := 0; slot < 3; slot++ {
		workerPID(m, 1, slot)
		workerPID(m, 2, slot)
	}
	pids := workerPIDs(m, 2)
	if len(pids) != 3 {
		t.Fatalf("gen 2 workers %v, want 3", pids)
	}
	if n := m.count(`CONTRACT .* pdeathsig=9 `); n != 6 {
		t.Errorf("%d of 6 workers have SIGKILL as parent-death signal", n)
	}
	m.signal(syscall.SIGKILL)
	m.wait()
	start := time.Now()
	for slot, pid := range pids {
		eventually(t, "worker "+slot+" gone", func() bool { return !alive(pid) })
	}
	t.Logf("workers gone %s after the master's SIGKILL", time.Since(start))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after the master and its workers died: %v", err)
	}
	ln.Close()
}

func TestReloadsDoNotLeakDescriptors(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0")
	m.waitReady(1)
	// Gen 2 creates the group's second socket; count from there.
	m.reload(2)
	before := fdCount(t, m.pid)
	for gen := 3; gen <= 52; gen++ {
		m.reload(gen)
	}
	// What the master holds for a moment after a drain (a drained worker's
	// cgroup being emptied and removed, a /proc read) is let go within a
	// bounded time; a leak stays.
	after := fdCount(t, m.pid)
	for deadline := time.Now().Add(testTimeout); after != before && time.Now().Before(deadline); after = fdCount(t, m.pid) {
		time.Sleep(10 * time.Millisecond)
	}
	if after != before {
		t.Errorf("master has %d descriptors after 50 reloads, %d before", after, before)
	}
	masterSockets(t, m.pid)
}

func TestReloadBurstCoalesces(t *testing.T) {
	t.Parallel()
	const n = 3
	// The new generations' slots 1 and up wait for the gate, so that the
	// whole burst falls within the first turnover however slowly a loaded
	// machine lets the master take the signals.
	gate := filepath.Join(t.TempDir(), "gate")
	m := startMaster(t, "rollout-app", "--workers", strconv.Itoa(n), "--listen", "web=127.0.0.1:0", "--env", "ROLLOUT_GATE="+gate)
	addr := m.listenAddr("web")
	m.waitReady(1)
	for i := 0; i < 50; i++ {
		m.signal(syscall.SIGHUP)
	}
	fenceSignals(t, m)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Settled: every generation started has become ready or failed, and
	// the master has exactly n children, all of the last generation.
	var last int
	eventually(t, "burst settled", func() bool {
		started := m.count(`gen \d+: starting`)
		done := m.count(`gen \d+ ready in`) - 1 + m.count(`reload failed`)
		if started == 0 || started != done {
			return false
		}
		kids := children(m.pid)
		if len(kids) != n {
			return false
		}
		gens := map[string]bool{}
		for _, pid := range kids {
			gens[envOf(pid, "HOTCLUSTER_GENERATION")] = true
		}
		if len(gens) != 1 {
			return false
		}
		for g := range gens {
			last, _ = strconv.Atoi(g)
		}
		return true
	})
	if last < 2 || last > 3 {
		t.Errorf("50 SIGHUPs ended at gen %d; want them coalesced into one or two turnovers", last)
	}
	if f := m.count(`reload failed`); f != 0 {
		t.Errorf("%d reloads failed", f)
	}
	assertServedBy(t, "tcp", addr, last)
	// Every worker of an older generation is gone: no orphan.
	for gen := 1; gen < last; gen++ {
		for slot, pid := range workerPIDs(m, gen) {
			eventually(t, fmt.Sprintf("gen %d worker %s gone", gen, slot), func() bool { return !alive(pid) })
		}
	}
}

// fenceSignals returns once the master has acted on every signal sent to
// it before: a SIGUSR1 it acknowledges in its log. The kernel hands a
// process its pending signals lowest number first and Go's runtime passes
// them on in that order too, so SIGHUP (1) is taken before SIGUSR1 (10).
// The master's signal channel is short and a full one drops a signal, so
// the SIGUSR1 is sent again until the master says it took one.
func fenceSignals(t *testing.T, m *master) {
	t.Helper()
	ack := regexp.MustCompile(`hotcluster: SIGUSR1: `)
	from := m.Next()
	for try := 0; try < 50; try++ {
		m.signal(syscall.SIGUSR1)
		if _, _, err := m.FindLine(from, ack, testTimeout/50); err == nil {
			return
		}
	}
	t.Fatalf("the master never acknowledged SIGUSR1")
}

// children lists the PIDs whose parent is pid. Each worker is forked by
// its own locked thread, so every thread's list counts. The keeper, which
// a master starts beside its workers, is not counted.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			if !isKeeper(n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// isKeeper: pid is a master's keeper (package internal/keeper).
func isKeeper(pid int) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return argv0 == "hotcluster-keeper"
}

func envOf(pid int, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestStopDrainsInFlightRequest(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		body, err := get("tcp", addr, "/slow?ms=1000")
		res <- result{body, err}
	}()
	m.waitLine(0, `SLOW START`)
	m.signal(syscall.SIGTERM)
	r := <-res
	if r.err != nil || !strings.HasPrefix(r.body, "hello ") {
		t.Fatalf("in-flight request during stop: %q, %v", r.body, r.err)
	}
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	m.waitLine(0, `stopped`)
}

func TestSecondStopSignalKillsAtOnce(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	go get("tcp", addr, "/slow?ms=600000")
	m.waitLine(0, `SLOW START`)
	m.signal(syscall.SIGTERM)
	m.waitLine(0, `stopping: draining`)
	// A person's pause before the second Ctrl-C, which is what tells it
	// from the repeat timeout(1) sends (TestQuickRepeatedStopStillDrains).
	time.Sleep(signals.RepeatWindow)
	m.signal(syscall.SIGINT)
	m.waitLine(0, `stopping now`)
	m.wait()
}

// GNU timeout(1) sends SIGTERM to its child and again to the child's
// process group: the two are one stop request, and the in-flight request
// is still answered. (Sent back to back, the kernel may merge the two
// before the master takes the first; the second goes once the first has
// been taken, as happens under timeout when the master is quick.)
func TestQuickRepeatedStopStillDrains(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	answered := make(chan error, 1)
	go func() { _, err := get("tcp", addr, "/slow?ms=300"); answered <- err }()
	m.waitLine(0, `SLOW START`)
	m.signal(syscall.SIGTERM)
	m.waitLine(0, `stopping: draining`)
	m.signal(syscall.SIGTERM)
	if err := <-answered; err != nil {
		t.Fatalf("the in-flight request: %v", err)
	}
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if n := m.count(`stopping now`); n != 0 {
		t.Error("the repeated SIGTERM stopped the master at once instead of letting it drain")
	}
}

func TestScaleUpAndDown(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0")
	m.waitReady(1)
	m.signal(syscall.SIGTTIN)
	m.waitLine(0, `^\[g1 w2\] CONTRACT`)
	eventually(t, "3 workers", func() bool { return len(children(m.pid)) == 3 })
	// Signals of one kind that arrive together merge into one: wait for
	// each to be handled before sending the next.
	m.signal(syscall.SIGTTOU)
	m.waitLine(0, `scale down to 2 workers`)
	m.signal(syscall.SIGTTOU)
	m.waitLine(0, `gen 1 worker 2 \(pid \d+\) drained`)
	m.waitLine(0, `gen 1 worker 1 \(pid \d+\) drained`)
	eventually(t, "1 worker", func() bool { return len(children(m.pid)) == 1 })
	m.signal(syscall.SIGTTOU)
	m.waitLine(0, `scale down ignored: already at 1 worker`)
	// A reload keeps the new size.
	m.reload(2)
	if pids := workerPIDs(m, 2); len(pids) != 1 {
		t.Errorf("gen 2 has workers %v, want 1", pids)
	}
}

// hotcluster runs the test binary as a master and waits for it.
func hotcluster(t *testing.T, args ...string) (code int, output string) {
	t.Helper()
	// A control socket directory of its own: parallel runs of the same
	// program must not meet at /run/hotcluster.
	return hotclusterEnv(t, []string{"XDG_RUNTIME_DIR=" + t.TempDir()}, args...)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	self, _ := os.Executable()
	notExec := t.TempDir() + "/server"
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"port in use", []string{"run", "--listen", busy.Addr().String(), "--", self}, 2,
			fmt.Sprintf("listen tcp-%d=%s: in use by pid %d (", busy.Addr().(*net.TCPAddr).Port, busy.Addr(), os.Getpid())},
		{"bad quiet timeout", []string{"run", "--quiet-timeout", "0s", "--", self}, 2, "--quiet-timeout 0s: want a positive duration"},
		{"bad address", []string{"run", "--listen", "127.0.0.1:99999", "--", self}, 2, `"127.0.0.1:99999": invalid port`},
		{"bad network", []string{"run", "--listen", "sctp://:80", "--", self}, 2, `unknown network "sctp"`},
		{"unwritable socket path", []string{"run", "--listen", "unix:///proc/hotcluster.sock", "--", self}, 1, "listen unix:///proc/hotcluster.sock"},
		{"missing command", []string{"run", "--listen", freeAddr, "--", "./no-such-server"}, 1, "no-such-server does not exist"},
		{"command not in PATH", []string{"run", "--", "no-such-server-xyz"}, 1, `"no-such-server-xyz": not found in PATH`},
		{"not executable", []string{"run", "--", notExec}, 1, "is not executable"},
		{"no command", []string{"run", "--listen", ":0"}, 2, "no worker command"},
		{"bad workers", []string{"run", "--workers", "0", "--", self}, 2, "--workers 0: want 1 or more"},
		{"bad signal", []string{"run", "--stop-signal", "NOPE", "--", self}, 2, `unknown signal "NOPE"`},
		{"bad env", []string{"run", "--env", "NOEQUALS", "--", self}, 2, `--env "NOEQUALS": want K=V`},
		{"unknown flag", []string{"run", "--lisen", ":80", "--", self}, 2, "run: unknown flag --lisen (did you mean --listen?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := hotcluster(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.code, tc.want)
			}
			if strings.Contains(out, "CONTRACT") || strings.Contains(out, "[g1 w") {
				t.Errorf("a worker was started:\n%s", out)
			}
		})
	}
	// The missing command was reported before anything was bound.
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Errorf("port %s taken after a failed start: %v", freeAddr, err)
	} else {
		ln.Close()
	}
}

func TestFirstGenerationFailureExits(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	code, out := hotcluster(t, "run", "--env", roleEnv+"=no-such-role", "--listen", "127.0.0.1:0", "--workers", "2", "--", self)
	if code != 1 || !strings.Contains(out, "first generation failed: worker") || !strings.Contains(out, `testroles: unknown HOTCLUSTER_TEST_ROLE="no-such-role"`) {
		t.Errorf("exit %d, output:\n%s\nwant exit 1 naming the failed worker and quoting its output", code, out)
	}
}
