package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// contract parses a worker's CONTRACT line.
func contract(line string) map[string]string {
	m := make(map[string]string)
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestWorkerContract(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := startMaster(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0",
		"--listen", "api=tcp4://127.0.0.1:0", "--env", "EXTRA=a,b=c", "--dir", dir)
	web, api := m.listenAddr("web"), m.listenAddr("api")
	m.waitReady(1)
	for slot := 0; slot < 2; slot++ {
		workerPID(m, 1, slot) // a worker's line may follow the ready line
	}
	seen := map[string]bool{}
	for _, l := range m.output() {
		i := strings.Index(l, "CONTRACT ")
		if i < 0 {
			continue
		}
		c := contract(l[i:])
		slot := c["HOTCLUSTER_WORKER_ID"]
		if !strings.HasPrefix(l, "[g1 w"+slot+"] ") {
			t.Errorf("line %q: prefix does not name gen 1 worker %s", l, slot)
		}
		seen[slot] = true
		for k, want := range map[string]string{
			"LISTEN_PID": c["pid"], "pgid": c["pid"], "pdeathsig": "9", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:api",
			"HOTCLUSTER_GENERATION": "1", "HOTCLUSTER_WORKERS": "2", "HOTCLUSTER_SHIM": "",
			"EXTRA": "a,b=c", "fd3": web, "fd4": api, "fd3nonblock": "true", "fd4nonblock": "true",
			"cwd": dir,
		} {
			if c[k] != want {
				t.Errorf("worker %s: %s=%q, want %q", slot, k, c[k], want)
			}
		}
		ns := c["NOTIFY_SOCKET"]
		fi, err := os.Stat(filepath.Dir(ns))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("notify socket directory %s has mode %v, want 0700", filepath.Dir(ns), fi.Mode().Perm())
		}
	}
	if !seen["0"] || !seen["1"] {
		t.Fatalf("contract lines from workers %v, want 0 and 1", seen)
	}
	// The master's own copies are still non-blocking after spawning.
	if n := masterSockets(t, m.pid); n < 2 {
		t.Errorf("master holds %d non-blocking listening sockets, want at least 2", n)
	}
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

// masterSockets counts the master's socket descriptors and fails the test
// if one of them lost O_NONBLOCK.
func masterSockets(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		sm := regexp.MustCompile(`flags:\s+([0-7]+)`).FindSubmatch(info)
		fl, _ := strconv.ParseUint(string(sm[1]), 8, 64)
		if fl&syscall.O_NONBLOCK == 0 {
			t.Errorf("master fd %s (%s) is blocking", e.Name(), target)
		}
		n++
	}
	return n
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// load runs a client loop in the background; stop ends it and returns
// the result.
func load(t *testing.T, cfg loadgen.Config) (stop func() *loadgen.Result) {
	t.Helper()
	if cfg.Duration == 0 {
		cfg.Duration = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	var res *loadgen.Result
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = loadgen.Run(ctx, cfg)
	}()
	var once sync.Once
	stop = func() *loadgen.Result {
		once.Do(func() { cancel(); <-done })
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	t.Cleanup(func() { stop() })
	return stop
}

func assertNoFailures(t *testing.T, res *loadgen.Result) {
	t.Helper()
	if res.Requests == 0 {
		t.Fatal("the client loop made no request")
	}
	if res.Failures != 0 {
		t.Errorf("%d of %d requests failed: %v", res.Failures, res.Requests, res.Errors)
	}
	t.Logf("%d requests, %d failed, p50 %s, p99 %s, max %s", res.Requests, res.Failures,
		res.Percentile(50), res.Percentile(99), res.Percentile(100))
}

// assertServedBy checks that n fresh requests are all answered by gen.
func assertServedBy(t *testing.T, network, addr string, gen int) {
	t.Helper()
	for i := 0; i < 20; i++ {
		body, err := get(network, addr, "/")
		if err != nil {
			t.Fatal(err)
		}
		sm := genRx.FindStringSubmatch(body)
		if sm == nil || sm[1] != strconv.Itoa(gen) {
			t.Fatalf("answer %q after the reload, want one from gen %d", body, gen)
		}
	}
}

func TestReloadLosesNothingWithPlainShutdown(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "plain", "--workers", "2", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 8})
	for gen := 2; gen <= 11; gen++ {
		m.reload(gen)
	}
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 11)
}

func TestReloadKeepAliveWithLibrary(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitReady(1)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 8, KeepAlive: true})
	for gen := 2; gen <= 11; gen++ {
		m.reload(gen)
	}
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 11)
}

func TestSharedUnixSocketReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app.sock")
	m := startMaster(t, "lib", "--workers", "2", "--listen", "unix://"+path)
	m.waitLine(0, `listening on .* \(shared: unix socket\)`)
	m.waitReady(1)
	stop := load(t, loadgen.Config{Network: "unix", Addr: path, Clients: 8})
	for gen := 2; gen <= 6; gen++ {
		m.reload(gen)
	}
	assertNoFailures(t, stop())
	assertServedBy(t, "unix", path, 6)
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after the master stopped: %v", err)
	}
}

func TestFailedReloadKeepsOldGeneration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		role, want string
		args       []string
	}{
		{"crash-from-gen2", `reload failed: gen 2 worker \d \(pid \d+\) exited before it was ready: exit status 3`, nil},
		{"never-ready-from-gen2", `reload failed: gen 2 not ready within --ready-timeout 2s`, []string{"--ready-timeout", "2s"}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--workers", "2", "--listen", "web=127.0.0.1:0"}, tc.args...)
			m := startMaster(t, tc.role, args...)
			addr := m.listenAddr("web")
			m.waitReady(1)
			stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
			m.signal(syscall.SIGHUP)
			m.waitLine(0, tc.want)
			if tc.role == "crash-from-gen2" {
				m.waitLine(0, `\| boom: this generation refuses to start`)
			}
			// A second failure, to be sure the first left nothing behind.
			m.signal(syscall.SIGHUP)
			m.waitLine(0, strings.Replace(tc.want, "gen 2", "gen 3", 1))
			assertNoFailures(t, stop())
			assertServedBy(t, "tcp", addr, 1)
			if n := m.count(`^\[g1 w`); n == 0 {
				t.Error("no output from gen 1")
			}
		})
	}
}
