package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
)

// The control socket and the metrics port survive an upgrade of the
// master: `hotcluster upgrade` reports the new master, and status requests
// made all through the upgrade are all answered.
func TestControlAcrossUpgrade(t *testing.T) {
	t.Parallel()
	m, _ := startCopiedMaster(t, "lib", "--workers", "1", "--ready", "notify", "--listen", "web=127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--name", "up")
	sm, _ := m.waitLine(0, `control socket (\S+) `)
	sock := sm[1]
	sm, _ = m.waitLine(0, `metrics on (http://\S+/metrics)`)
	url := sm[1]
	m.waitLine(0, `serving \(master pid`)
	ev := watchEvents(t, nil, "--control", sock)

	// Status requests, one after the other, all through the upgrade.
	ctx, cancel := context.WithCancel(context.Background())
	type tally struct {
		ok   int
		errs []string
		pids map[int]bool
	}
	res := make(chan tally, 1)
	go func() {
		tl := tally{pids: map[int]bool{}}
		deadline := time.Now().Add(testTimeout)
		for i := 0; i < 100000 && ctx.Err() == nil && time.Now().Before(deadline); i++ {
			var st control.Status
			if err := control.Call(ctx, sock, control.Request{Cmd: control.CmdStatus}, &st); err != nil {
				if ctx.Err() == nil {
					tl.errs = append(tl.errs, err.Error())
				}
				continue
			}
			tl.ok++
			tl.pids[st.PID] = true
		}
		res <- tl
	}()

	out := mustCtl(t, nil, "upgrade", "--control", sock)
	sm2 := regexpFind(t, `upgraded: master pid (\d+) serves`, out)
	newPID, _ := strconv.Atoi(sm2[1])
	if newPID == m.pid {
		t.Fatalf("upgrade says the old master %d serves", newPID)
	}
	ev.next(func(e control.Event) bool { return e.Event == "upgrade-start" })
	ev.next(func(e control.Event) bool { return e.Event == "upgrade-done" && e.PID == newPID })
	// hotcluster events follows the socket to the new master.
	ev.next(func(e control.Event) bool { return e.Event == "connected" && e.PID == newPID })
	eventually(t, fmt.Sprintf("old master %d gone", m.pid), func() bool { return !alive(m.pid) })
	var st control.Status
	for i := 0; ; i++ {
		// The request may still reach the old master until it has closed
		// its copy of the socket.
		st = statusOf(t, nil, "--control", sock)
		if st.PID == newPID || i == 100 {
			break
		}
	}
	cancel()
	tl := <-res
	if len(tl.errs) > 0 || tl.ok == 0 {
		t.Errorf("status through the upgrade: %d answered, %d failed: %v", tl.ok, len(tl.errs), tl.errs[:min(3, len(tl.errs))])
	}
	if st.PID != newPID || st.Name != "up" || st.Generation < 2 {
		t.Errorf("status after the upgrade: %+v, want master %d", st, newPID)
	}
	t.Logf("%d status requests answered through the upgrade, by masters %v", tl.ok, tl.pids)
	if v, ok := metricValue(scrape(t, url), "hotcluster_generation", nil); !ok || v != float64(st.Generation) {
		t.Errorf("metrics after the upgrade: generation %v %v, want %d", v, ok, st.Generation)
	}
	if out := mustCtl(t, nil, "stop", "--control", sock); !strings.Contains(out, "stopped in") {
		t.Errorf("stop: %q", out)
	}
	select {
	case <-m.eof:
	case <-time.After(testTimeout):
		t.Fatal("the new master did not exit after stop")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket after the last master stopped: %v", err)
	}
	// And ends once no master is left.
	ev.next(func(e control.Event) bool { return e.Event == "exit" && e.Generation == st.Generation })
	deadline := time.After(testTimeout)
	for open := true; open; {
		select {
		case _, open = <-ev.lines:
		case <-deadline:
			t.Fatal("hotcluster events still running after the last master stopped")
		}
	}
}

func regexpFind(t *testing.T, re, s string) []string {
	t.Helper()
	sm := regexp.MustCompile(re).FindStringSubmatch(s)
	if sm == nil {
		t.Fatalf("%q does not match %s", s, re)
	}
	return sm
}
