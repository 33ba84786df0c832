package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/control"
)

// Sticky balance holds across a rollout: half done, each client address
// is still on its slot, served by the new generation where its slot was
// replaced and by the old one elsewhere; at the end, on the same slot of
// the new generation.
func TestStickyAcrossRollout(t *testing.T) {
	needsEBPF(t)
	t.Parallel()
	gate := filepath.Join(t.TempDir(), "gate")
	m := startOperated(t, "rollout-app", "--workers", "4", "--rollout", "1", "--balance", "sticky",
		"--listen", "web=127.0.0.1:0", "--env", "ROLLOUT_GATE="+gate)
	m.waitReady(1)
	addr := m.listenAddr("web")
	sources := stickySources()
	check := func(what string, genOf func(slot int) int) {
		t.Helper()
		for _, from := range sources {
			want := predictedSlot(from, 4)
			g, slot := slotFrom(t, "tcp", addr, from)
			if slot != want || g != genOf(slot) {
				t.Fatalf("%s: request from %s served by gen %d slot %d, want gen %d slot %d", what, from, g, slot, genOf(want), want)
			}
		}
	}
	check("gen 1", func(int) int { return 1 })
	ev := watchEvents(t, m.env)
	m.signal(syscall.SIGHUP)
	// Slot 0's new worker serves; the others wait for the gate.
	ev.next(func(e control.Event) bool { return e.Event == "rollout" && e.Replaced != nil && *e.Replaced == 1 })
	check("rollout 1/4", func(slot int) int {
		if slot == 0 {
			return 2
		}
		return 1
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ev.next(func(e control.Event) bool { return e.Event == "reload-done" && e.Generation == 2 })
	check("after the rollout", func(int) int { return 2 })
}
