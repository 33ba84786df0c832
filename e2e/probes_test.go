package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/signals"
)

// probe is one answer of the master's health server.
type probe struct {
	code int
	body string
}

func getProbe(t *testing.T, addr, path string) probe {
	t.Helper()
	p, err := getProbeErr(addr, path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// getProbeErr asks on a new connection, as kubelet's probes do.
func getProbeErr(addr, path string) (probe, error) {
	c := http.Client{Timeout: testTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return probe{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return probe{resp.StatusCode, string(b)}, err
}

func (m *master) healthAddr() string {
	m.t.Helper()
	sm, _ := m.waitLine(0, `health on http://(\S+) \(/livez, /readyz, /status\)`)
	return sm[1]
}

// pollReady asks /readyz over and over until stop is called, and returns
// every answer that was not 200 ready.
func pollReady(t *testing.T, addr string) (stop func() (n int, bad []string)) {
	var mu sync.Mutex
	var bad []string
	n := 0
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			p, err := getProbeErr(addr, "/readyz")
			mu.Lock()
			n++
			if err != nil || p.code != 200 || p.body != "ready\n" {
				bad = append(bad, fmt.Sprintf("%d %q %v", p.code, p.body, err))
			}
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() (int, []string) {
		once.Do(func() { close(quit); <-done })
		mu.Lock()
		defer mu.Unlock()
		return n, bad
	}
	t.Cleanup(func() { stop() })
	return stop
}

// /livez, /readyz and /status on --health: ready through a reload, and
// from the first SIGTERM /readyz is 503 while the port keeps serving for
// --shutdown-delay (a client that keeps sending, as one behind a load
// balancer that has not caught up yet, loses nothing), until hotcluster
// stop ends the delay and drains.
func TestProbesThroughReloadAndShutdownDelay(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0", "--health", "127.0.0.1:0", "--shutdown-delay", "10m")
	addr, health := m.listenAddr("web"), m.healthAddr()
	m.waitLine(0, `gen 1 ready in`)
	if p := getProbe(t, health, "/livez"); p.code != 200 || p.body != "live\n" {
		t.Fatalf("/livez: %d %q", p.code, p.body)
	}
	if p := getProbe(t, health, "/readyz"); p.code != 200 || p.body != "ready\n" {
		t.Fatalf("/readyz: %d %q", p.code, p.body)
	}
	var st control.Status
	if p := getProbe(t, health, "/status"); p.code != 200 || json.Unmarshal([]byte(p.body), &st) != nil || st.Generation != 1 || len(st.Workers) != 2 {
		t.Fatalf("/status: %d %q", p.code, p.body)
	}
	if p := getProbe(t, health, "/nothing"); p.code != 404 {
		t.Fatalf("/nothing: %d, want 404", p.code)
	}

	stopPoll := pollReady(t, health)
	m.reload(2)
	if n, bad := stopPoll(); n == 0 || len(bad) != 0 {
		t.Fatalf("/readyz during a reload: %d probes, not ready: %v", n, bad)
	}

	m.signal(syscall.SIGTERM)
	m.waitLine(0, `stopping: /readyz fails from now on; serving 10m0s more \(--shutdown-delay\), then draining`)
	if p := getProbe(t, health, "/readyz"); p.code != 503 || p.body != "not ready: stopping\n" {
		t.Fatalf("/readyz during the shutdown delay: %d %q, want 503", p.code, p.body)
	}
	if p := getProbe(t, health, "/livez"); p.code != 200 {
		t.Fatalf("/livez during the shutdown delay: %d %q", p.code, p.body)
	}
	// A client that keeps sending after /readyz failed, as one behind a
	// load balancer that has not caught up: 500 requests, all answered.
	res, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Clients: 4, MaxRequests: 500, Duration: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	assertNoFailures(t, res)
	assertServedBy(t, "tcp", addr, 2)
	if m.count(`stopping: draining`) != 0 {
		t.Fatal("the workers drained during the shutdown delay")
	}
	mustCtl(t, m.env, "stop")
	m.waitLine(0, `stopping: draining 2 workers`)
	if code := m.wait(); code != 0 {
		t.Fatalf("master exited %d", code)
	}
}

// Without hotcluster stop, the delay ends by itself and the workers drain
// then, not before.
func TestShutdownDelayThenDrain(t *testing.T) {
	t.Parallel()
	const delay = 1500 * time.Millisecond
	m := startMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0", "--health", "127.0.0.1:0", "--shutdown-delay", delay.String())
	health := m.healthAddr()
	m.waitLine(0, `gen 1 ready in`)
	t0 := time.Now()
	m.signal(syscall.SIGTERM)
	m.waitLine(0, `stopping: /readyz fails`)
	if p := getProbe(t, health, "/readyz"); p.code != 503 {
		t.Fatalf("/readyz: %d %q, want 503", p.code, p.body)
	}
	m.waitLine(0, `stopping: draining 1 worker`)
	if took := time.Since(t0); took < delay {
		t.Fatalf("draining began %s after SIGTERM, before --shutdown-delay %s", took, delay)
	}
	if code := m.wait(); code != 0 {
		t.Fatalf("master exited %d", code)
	}
}

// A second stop signal during the delay stops at once.
func TestSecondStopSignalDuringTheShutdownDelay(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0", "--shutdown-delay", "10m")
	m.waitLine(0, `gen 1 ready in`)
	m.signal(syscall.SIGTERM)
	m.waitLine(0, `stopping: /readyz fails`)
	// Past the window in which a second signal is the same request.
	time.Sleep(signals.RepeatWindow)
	m.signal(syscall.SIGTERM)
	m.waitLine(0, `stopping now: killed 1 worker`)
	if code := m.wait(); code != 0 {
		t.Fatalf("master exited %d", code)
	}
}

// /readyz is 503 before the first generation serves.
func TestNotReadyBeforeTheFirstGeneration(t *testing.T) {
	t.Parallel()
	// The silent role never sends READY=1, which --ready notify waits for.
	m := startMaster(t, "silent", "--workers", "1", "--listen", "web=127.0.0.1:0", "--health", "127.0.0.1:0",
		"--ready", "notify", "--ready-timeout", "10m")
	health := m.healthAddr()
	// The health server answers from before the pool's loop runs: live
	// once the loop answers.
	eventually(t, "/livez 200", func() bool { p, err := getProbeErr(health, "/livez"); return err == nil && p.code == 200 })
	if p := getProbe(t, health, "/readyz"); p.code != 503 || p.body != "not ready: no generation serves yet\n" {
		t.Fatalf("/readyz before gen 1: %d %q", p.code, p.body)
	}
}

// The health port crosses an upgrade as the metrics port does: /readyz is
// 200 all through it (the new master answers once its generation serves;
// until then the old one does), and the new master answers afterwards.
func TestProbesAcrossUpgrade(t *testing.T) {
	t.Parallel()
	// A second of start-up for the new master, in which it must not say
	// "not ready" for the old one.
	m, _ := startCopiedMaster(t, "lib", "--workers", "1", "--ready", "delay", "--ready-delay", "1s", "--listen", "web=127.0.0.1:0", "--health", "127.0.0.1:0")
	health := m.healthAddr()
	m.waitLine(0, `serving \(master pid`)
	stopPoll := pollReady(t, health)
	m.signal(syscall.SIGUSR2)
	sm, next := m.waitLine(0, `upgraded: master pid (\d+) took over`)
	m.waitLine(next, `the previous master has exited`)
	n, bad := stopPoll()
	if n == 0 || len(bad) != 0 {
		t.Fatalf("/readyz through the upgrade: %d probes, not ready: %v", n, bad)
	}
	var st control.Status
	eventually(t, "/status from the new master", func() bool {
		p, err := getProbeErr(health, "/status")
		return err == nil && p.code == 200 && json.Unmarshal([]byte(p.body), &st) == nil && fmt.Sprint(st.PID) == sm[1]
	})
	t.Logf("%d probes through the upgrade, all ready", n)
}
