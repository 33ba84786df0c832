package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// The bundled examples reload under load without a failed request, each in
// the way its README says to run it.
func TestExamples(t *testing.T) {
	t.Parallel()
	hello := filepath.Join(t.TempDir(), "hello")
	if out, err := exec.Command("go", "build", "-o", hello, "../examples/hello").CombinedOutput(); err != nil {
		t.Fatalf("build examples/hello: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name      string
		command   []string
		keepAlive bool
	}{
		{"hello", []string{hello}, false},
		{"hello keep-alive", []string{hello}, true},
		{"hello plain Shutdown", []string{hello, "-plain-shutdown"}, false},
		{"node", []string{"node", "../examples/node/server.js"}, true},
		{"python", []string{"python3", "../examples/python/server.py"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath(tc.command[0]); err != nil {
				t.Skipf("%s is not installed here: %v", tc.command[0], err)
			}
			// --ready notify: each example reports readiness itself (the Go
			// library's READY=1, Python's READY=1, Node's process.send('ready')).
			m := startCommand(t, []string{"--workers", "2", "--listen", "web=127.0.0.1:0", "--ready", "notify", "--ready-timeout", "30s"}, tc.command...)
			addr := m.listenAddr("web")
			m.waitReady(1)
			stop := load(t, loadgen.Config{Addr: addr, Clients: 4, KeepAlive: tc.keepAlive})
			for gen := 2; gen <= 4; gen++ {
				m.reload(gen)
			}
			assertNoFailures(t, stop())
			assertServedBy(t, "tcp", addr, 4)
		})
	}
}

// examples/node answers hotcluster send as its README says.
func TestNodeExampleMessages(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skipf("node is not installed here: %v", err)
	}
	dir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + dir}
	m := startCommandEnv(t, env, []string{"--workers", "2", "--listen", "web=127.0.0.1:0", "--ready", "notify"}, "node", "../examples/node/server.js")
	m.waitLine(0, `serving \(master pid`)
	get("tcp", m.listenAddr("web"), "/")
	ev := watchEvents(t, env)
	mustCtl(t, env, "send", "--worker", "1", `{"cmd":"stats"}`)
	e := ev.next(func(e control.Event) bool { return e.Event == "message" })
	var st struct {
		Stats struct {
			PID         int
			Gen, Worker string
			Requests    int
		}
	}
	if err := json.Unmarshal(e.Message, &st); err != nil || st.Stats.PID != e.PID || st.Stats.Worker != "1" || st.Stats.Gen != "1" {
		t.Errorf("stats %s from %+v: %v", e.Message, e, err)
	}
	mustCtl(t, env, "send", "--worker", "0", `{"cmd":"tell-all","data":"hi"}`)
	_, next := m.waitLine(0, `node: told "hi" pid=`)
	m.waitLine(next, `node: told "hi" pid=`)
}
