package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// A program that speaks no protocol reloads without a failed request under
// the default readiness, each generation counting as ready after the delay.
func TestSilentWorkerReadyAfterDelay(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "silent", "--workers", "2", "--listen", "web=127.0.0.1:0", "--ready-delay", "300ms")
	addr := m.listenAddr("web")
	m.waitReady(1)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	for gen := 2; gen <= 4; gen++ {
		m.reload(gen)
		sm, _ := m.waitLine(0, `gen `+strconv.Itoa(gen)+` ready in (\S+)`)
		d, err := time.ParseDuration(sm[1])
		if err != nil || d < 300*time.Millisecond {
			t.Errorf("gen %d ready in %s, before --ready-delay 300ms", gen, sm[1])
		}
	}
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 4)
}

// With --ready notify a program that never sends READY=1 never takes over.
func TestNotifyModeWaitsForReady(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "silent", "--workers", "1", "--listen", "web=127.0.0.1:0",
		"--ready", "notify", "--ready-timeout", "1s")
	m.waitLine(0, `first generation failed: not ready within --ready-timeout 1s; still waiting for worker 0`)
	if code := m.wait(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if m.count(`serving \(master`) != 0 {
		t.Error("master reported serving")
	}
}
