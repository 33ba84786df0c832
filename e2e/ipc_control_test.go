package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/internal/control"
)

// Round trips over the message channel: hotcluster send to one worker and
// to all, worker → master messages as events, and a broadcast a worker asks
// for reaching every worker of its generation.
func TestSendAndBroadcast(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "messenger", "--workers", "2", "--ready", "notify", "--ipc", "on", "--listen", "127.0.0.1:0", "--log-level", "debug")
	ev := watchEvents(t, m.env)
	isMsg := func(key string, slot int) func(control.Event) bool {
		return func(e control.Event) bool {
			var v map[string]json.RawMessage
			return e.Event == "message" && e.Slot != nil && *e.Slot == slot && json.Unmarshal(e.Message, &v) == nil && v[key] != nil
		}
	}

	var sent control.Sent
	if err := json.Unmarshal([]byte(mustCtl(t, m.env, "send", "--json", "--worker", "1", `{"echo":{"n":1}}`)), &sent); err != nil || sent.Delivered != 1 {
		t.Fatalf("send --worker 1: %+v %v", sent, err)
	}
	e := ev.next(isMsg("echoed", 1))
	if string(e.Message) != `{"echoed":{"n":1},"slot":1}` || e.Generation != 1 || e.PID == 0 {
		t.Errorf("echo event %+v (%s)", e, e.Message)
	}

	out := mustCtl(t, m.env, "send", `{"echo":"all"}`)
	if !strings.Contains(out, "delivered to 2 worker(s)") {
		t.Errorf("send to all: %q", out)
	}
	for range 2 {
		ev.next(func(e control.Event) bool { return isMsg("echoed", 0)(e) || isMsg("echoed", 1)(e) })
	}

	// Worker 0 asks for a broadcast; both workers answer what they got.
	mustCtl(t, m.env, "send", "--worker", "0", `{"broadcast":"hi"}`)
	got := map[string]bool{}
	for range 2 {
		e := ev.next(func(e control.Event) bool { return isMsg("got", 0)(e) || isMsg("got", 1)(e) })
		got[string(e.Message)] = true
	}
	if !got[`{"got":"hi","slot":0}`] || !got[`{"got":"hi","slot":1}`] {
		t.Errorf("the broadcast's answers: %v", got)
	}
	m.waitLine(0, `gen 1 worker 1 \(pid \d+\): message \{"got":"hi","slot":1\}`)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"send", "not json"}, 2, "is not JSON"},
		{[]string{"send", "--worker", "7", `"x"`}, 1, "gen 1 has no worker 7"},
		{[]string{"send", "--worker", "0", "--all", `"x"`}, 2, "exclude each other"},
	} {
		if code, _, errs := ctl(t, m.env, tc.args...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d: %s, want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}

// Workers without a message channel: send says what to do.
func TestSendWithoutChannel(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "1", "--listen", "127.0.0.1:0")
	code, _, errs := ctl(t, m.env, "send", `"x"`)
	if code != 1 || !strings.Contains(errs, "has no message channel (run with --ipc on, or node)") {
		t.Errorf("send without --ipc: exit %d: %s", code, errs)
	}
}

// A Node.js worker under hotcluster, as under cluster: process.on('message')
// gets what hotcluster send sends, and process.send's answers are events.
func TestNodeWorkerMessages(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	script := filepath.Join(t.TempDir(), "worker.js")
	os.WriteFile(script, []byte(`
const http = require('http');
const srv = http.createServer((req, res) => res.end('node ' + process.pid + '\n'));
srv.listen({fd: 3}, () => process.send('ready'));
process.on('message', (m) => {
  if (m && m.ping !== undefined) process.send({pong: m.ping, id: process.env.HOTCLUSTER_WORKER_ID});
  if (m && m.all !== undefined) process.send({cmd: 'hotcluster:broadcast', data: {relay: m.all}});
  if (m && m.relay !== undefined) process.send({relayed: m.relay, id: process.env.HOTCLUSTER_WORKER_ID});
});
process.on('SIGTERM', () => srv.close(() => process.exit(0)));
`), 0o644)
	dir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + dir}
	m := startCommandEnv(t, env, []string{"--workers", "2", "--ready", "notify", "--listen", "127.0.0.1:0", "--name", "nodeapp"}, node, script)
	m.waitLine(0, `serving \(master pid`)
	ev := watchEvents(t, env)
	mustCtl(t, env, "send", "--worker", "1", `{"ping":42}`)
	e := ev.next(func(e control.Event) bool { return e.Event == "message" && strings.Contains(string(e.Message), "pong") })
	if string(e.Message) != `{"pong":42,"id":"1"}` || *e.Slot != 1 {
		t.Errorf("pong %+v: %s", e, e.Message)
	}
	mustCtl(t, env, "send", "--worker", "0", `{"all":"x"}`)
	got := map[string]bool{}
	for range 2 {
		e := ev.next(func(e control.Event) bool {
			return e.Event == "message" && strings.Contains(string(e.Message), "relayed")
		})
		got[string(e.Message)] = true
	}
	if !got[`{"relayed":"x","id":"0"}`] || !got[`{"relayed":"x","id":"1"}`] {
		t.Errorf("broadcast answers %v", got)
	}
}

// A worker that never reads its channel fills its queue: send then fails
// and says why, and the master goes on answering.
func TestSendToAWorkerThatDoesNotRead(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "1", "--ipc", "on", "--listen", "127.0.0.1:0", "--name", "deaf")
	sock := filepath.Join(m.dir, "deaf.sock")
	big := json.RawMessage(`"` + strings.Repeat("x", 512<<10) + `"`)
	var err error
	sent := 0
	// The kernel's socket buffer takes a message or two, the queue 64.
	for i := 0; i < 200 && err == nil; i++ {
		var r control.Sent
		if err = control.Call(context.Background(), sock, control.Request{Cmd: control.CmdSend, Message: big}, &r); err == nil {
			sent++
		}
	}
	if err == nil || !strings.Contains(err.Error(), "messages queued that it has not read; message dropped") {
		t.Fatalf("after %d sends: %v, want the queue to be full", sent, err)
	}
	if sent < 64 {
		t.Errorf("only %d messages queued before the queue was full", sent)
	}
	if st := statusOf(t, m.env); st.Generation != 1 || len(st.Workers) != 1 {
		t.Errorf("status after filling the queue: %+v", st)
	}
	mustCtl(t, m.env, "reload") // and a turnover still works
}

// Reloads asked for at once coalesce, and each gets an outcome.
func TestConcurrentReloadsAllAnswered(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "2", "--ready", "notify", "--listen", "web=127.0.0.1:0")
	type result struct {
		code     int
		out, err string
		failed   error
	}
	results := make(chan result, 4)
	for range 4 {
		go func() {
			code, out, errs, err := ctlRun(m.env, "reload", "--json")
			results <- result{code, out, errs, err}
		}()
	}
	gens := map[uint64]bool{}
	for range 4 {
		r := <-results
		if r.failed != nil {
			t.Error(r.failed)
			continue
		}
		var rl control.Reload
		if r.code != 0 || json.Unmarshal([]byte(r.out), &rl) != nil || !rl.OK || rl.Generation < 2 {
			t.Errorf("reload: exit %d: %s%s", r.code, r.out, r.err)
			continue
		}
		gens[rl.Generation] = true
	}
	st := statusOf(t, m.env)
	// 4 requests, at most one turnover each, at least one in all; the
	// last one reported is the serving one.
	if len(gens) == 0 || len(gens) > 4 || !gens[st.Generation] || int(st.Generation) > 5 {
		t.Errorf("generations reported %v, serving %d", gens, st.Generation)
	}
	t.Logf("4 concurrent reloads: generations %v", gens)
}
