package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// follower is a running `hotcluster logs -f`.
type follower struct {
	*collector
	cmd *exec.Cmd
}

// followLogs starts `hotcluster logs -f ARGS` with env.
func followLogs(t *testing.T, env []string, args ...string) *follower {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Args = append([]string{"hotcluster", "logs", "-f"}, args...)
	cmd.Env = append(append(os.Environ(), roleEnv+"=master"), env...)
	cmd.Stderr = os.Stderr
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	f := &follower{collect(t, r), cmd}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-f.eof
		// SIGTERM ends it cleanly, as Ctrl-C does: exit 0.
		if err := cmd.Wait(); err != nil {
			t.Errorf("hotcluster logs -f: %v", err)
		}
	})
	return f
}

// `hotcluster logs`: the last lines (-n), one worker's (--worker), one
// generation's (--generation), as JSON (--json), and -f streaming new
// lines across a reload.
func TestLogsCommand(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "log-printer", "--workers", "2", "--listen", "web=127.0.0.1:0", "--name", "lg")
	addr := m.listenAddr("web")
	m.waitLine(0, `^\[g1 w0\] quote`)
	m.waitLine(0, `^\[g1 w1\] quote`)

	last := strings.Split(strings.TrimSpace(mustCtl(t, m.env, "logs", "-n", "3")), "\n")
	if len(last) != 3 {
		t.Errorf("logs -n 3: %d lines: %q", len(last), last)
	}
	for _, l := range last {
		if !regexp.MustCompile(`^` + rfc3339ms + `(hotcluster: |\[g1 w\d( err)?\] )`).MatchString(l) {
			t.Errorf("logs line %q: want a time and a prefix", l)
		}
	}
	w1 := mustCtl(t, m.env, "logs", "--worker", "1", "-n", "100")
	for _, want := range []string{"[g1 w1] out: hello from g1 w1", "[g1 w1 err] err: trouble in g1 w1", `[g1 w1] {"event":"boot","gen":1,"worker":1,`} {
		if !strings.Contains(w1, want) {
			t.Errorf("logs --worker 1 lacks %q:\n%s", want, w1)
		}
	}
	if strings.Contains(w1, "w0") || strings.Contains(w1, "hotcluster:") {
		t.Errorf("logs --worker 1 has other lines:\n%s", w1)
	}
	js := strings.Split(strings.TrimSpace(mustCtl(t, m.env, "logs", "--worker", "0", "--json", "-n", "100")), "\n")
	objects := 0
	for _, l := range js {
		var v jsonLine
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Slot == nil || *v.Slot != 0 {
			t.Errorf("logs --json line %q: %v", l, err)
		}
		if v.JSON != nil {
			objects++
		}
	}
	if objects != 1 {
		t.Errorf("logs --json: %d JSON objects kept as objects, want 1:\n%s", objects, strings.Join(js, "\n"))
	}

	// With the last line first, which says the stream is there.
	f := followLogs(t, m.env, "-n", "1")
	f.waitLine(`.`)
	if _, err := get("tcp", addr, "/followed"); err != nil {
		t.Fatal(err)
	}
	f.waitLine(`^` + rfc3339ms + `\[g1 w\d\] served /followed by g1`)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 2})
	m.reload(2)
	assertNoFailures(t, stop())
	f.waitLine(`hotcluster: gen 2 ready in`)
	f.waitLine(`\[g2 w1\] out: hello from g2 w1$`)
	f.waitLine(`hotcluster: gen 1 drained`)
	for _, l := range f.all()[1:] {
		if strings.Contains(l, "[g1 ") && (strings.Contains(l, "quote") || strings.Contains(l, "out: hello")) {
			t.Errorf("logs -f -n 1 printed more than one line from before it started: %q", l)
		}
	}
	g2 := mustCtl(t, m.env, "logs", "--generation", "2", "-n", "10000")
	if !strings.Contains(g2, "[g2 w0] out: hello from g2 w0") || strings.Contains(g2, "[g1 ") || strings.Contains(g2, "hotcluster:") {
		t.Errorf("logs --generation 2:\n%s", g2)
	}
	if recent := mustCtl(t, m.env, "logs", "--since", "1h"); !strings.Contains(recent, "[g1 w0] out: hello from g1 w0") || !strings.Contains(recent, "gen 2 ready") {
		t.Errorf("logs --since 1h lacks lines of the last hour:\n%s", recent)
	}
	for _, bad := range [][]string{{"-n", "-1"}, {"--worker", "-2"}, {"--generation", "0"}, {"--since", "-5m"}, {"extra"}} {
		if code, _, errs := ctl(t, m.env, append([]string{"logs"}, bad...)...); code != 2 || !strings.Contains(errs, "logs") {
			t.Errorf("logs %v: exit %d, %s; want exit 2", bad, code, errs)
		}
	}
	if code, _, errs := ctl(t, m.env, "logs", "--name", "nosuch"); code != 1 || !strings.Contains(errs, "no master") {
		t.Errorf("logs --name nosuch: exit %d, %s", code, errs)
	}
}

// logs -f follows the control socket to the new master of an upgrade: the
// new master's lines come, each once; what the old master printed after
// the hand-over is its own (lost to the stream).
func TestLogsFollowAcrossUpgrade(t *testing.T) {
	t.Parallel()
	m, _ := startCopiedMaster(t, "log-printer", "--log-time=false", "--workers", "1", "--listen", "web=127.0.0.1:0", "--name", "lu")
	sock, _ := m.waitLine(0, `control socket (\S+) `)
	m.waitLine(0, `^\[g1 w0\] quote`)
	addr := m.listenAddr("web")
	f := followLogs(t, nil, "--control", sock[1], "-n", "100")
	f.waitLine(`\[g1 w0\] out: hello from g1 w0$`)
	out := mustCtl(t, nil, "upgrade", "--control", sock[1])
	newPID := regexpFind(t, `upgraded: master pid (\d+) serves`, out)[1]
	f.waitLine(`\[g2 w0\] out: hello from g2 w0$`)
	eventually(t, "old master gone", func() bool { return !alive(m.pid) })
	if _, err := get("tcp", addr, "/after-upgrade"); err != nil {
		t.Fatal(err)
	}
	f.waitLine(`\[g2 w0\] served /after-upgrade by g2 w0`)
	seen := map[string]int{}
	for _, l := range f.all() {
		seen[l]++
		if seen[l] == 2 && !strings.Contains(l, "hotcluster:") {
			t.Errorf("printed twice: %q", l)
		}
	}
	if st := statusOf(t, nil, "--control", sock[1]); fmt.Sprint(st.PID) != newPID {
		t.Errorf("status from pid %d, want the new master %s", st.PID, newPID)
	}
	// The new master keeps only its own lines.
	if all := mustCtl(t, nil, "logs", "--control", sock[1], "-n", "1000"); strings.Contains(all, "[g1 ") {
		t.Errorf("the new master has lines of the old one's workers:\n%s", all)
	}
}

func init() {
	roles.Register("log-flood", roleLogFlood)
}

// roleLogFlood prints a 50 MB line without a newline, then 200,000 lines
// as fast as it can, then serves.
func roleLogFlood() int {
	w := bufioWriter(os.Stdout)
	chunk := strings.Repeat("z", 1<<20)
	for i := 0; i < 50; i++ {
		w.WriteString(chunk)
	}
	w.WriteString("\nafter the long line\n")
	for i := 0; i < 200000; i++ {
		fmt.Fprintf(w, "flood %06d %s\n", i, chunk[:80])
	}
	w.WriteString("flood done\n")
	w.Flush()
	return roleLogPrinter()
}

// A worker that floods (a 50 MB line without a newline, then 200,000
// lines as fast as it can) costs the master bounded memory: the line is
// cut at 64 KiB with a marker, the next line is whole, the master's Go
// heap stays far below the line's size, and the master keeps serving,
// answering and reloading, dropping what its output cannot take.
func TestWorkerFloodBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + dir}
	self, _ := os.Executable()
	m := startCommandEnv(t, env, []string{"--env", roleEnv + "=log-flood", "--workers", "1", "--listen", "web=127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--ready", "notify"}, self)
	// What the master prints before the flood gets through; after it, its
	// output drops lines (this test reads it slowly enough), so the rest
	// is learnt from the control socket and the ring.
	sm0, _ := m.waitLine(0, `metrics on (http://\S+/metrics)`)
	url := sm0[1]
	addr := m.listenAddr("web")
	sm, _ := m.waitLine(0, `^\[g1 w0\] (z+)( \[hotcluster: line cut at 64 KiB\])$`)
	if len(sm[1]) != 64<<10 {
		t.Errorf("the long line came out with %d bytes, want 65536", len(sm[1]))
	}
	m.waitLine(0, `^\[g1 w0\] after the long line$`)
	eventually(t, "generation 1 serving", func() bool {
		code, out, _, err := ctlRun(env, "status", "--json")
		return err == nil && code == 0 && strings.Contains(out, `"state": "serving"`)
	})
	// The ring has the worker's last lines, the flood's end among them.
	// The ring has the worker's last lines, the flood's end among them,
	// once the master has read that far.
	eventually(t, "the flood's end in logs", func() bool {
		code, last, _, err := ctlRun(env, "logs", "--worker", "0", "-n", "7")
		return err == nil && code == 0 && strings.Contains(last, "[g1 w0] flood done") && strings.Contains(last, `[g1 w0] quote " and`)
	})
	// The next generation floods again while it starts and the first
	// drains: the reload and the traffic go on all the same.
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	if out := mustCtl(t, env, "reload"); !strings.Contains(out, "generation 2 ready") {
		t.Fatalf("reload during the flood: %s", out)
	}
	assertNoFailures(t, stop())
	fams := scrape(t, url)
	heap, ok := metricValue(fams, "go_memstats_heap_sys_bytes", nil)
	if !ok || heap > 40<<20 {
		t.Errorf("the master's heap took %.1f MiB from the system (metric found: %v) with a 50 MB line and a flood; want under 40 MiB", heap/(1<<20), ok)
	}
	st := statusOf(t, env)
	if st.Log == nil || st.Log.BufferLines > st.Log.BufferMaxLines || st.Log.BufferBytes > st.Log.BufferMaxBytes {
		t.Fatalf("log buffer %+v: over its bounds", st.Log)
	}
	t.Logf("heap from the system %.1f MiB; %d lines dropped; buffer %d lines, %d bytes", heap/(1<<20), st.LogDropped, st.Log.BufferLines, st.Log.BufferBytes)
}
