package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// operated is a master with a control directory of its own.
type operated struct {
	*master
	env []string // what its clients need: XDG_RUNTIME_DIR
	dir string   // where its control socket is
}

// startOperated starts a master of role workers, addressed by the clients
// of ctl through env.
func startOperated(t *testing.T, role string, args ...string) *operated {
	t.Helper()
	dir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + dir}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := startCommandEnv(t, env, append([]string{"--env", roleEnv + "=" + role}, args...), self)
	m.waitLine(0, `serving \(master pid`)
	return &operated{m, env, filepath.Join(dir, "hotcluster")}
}

// ctl runs a hotcluster client command with env and returns its exit code
// and outputs.
func ctl(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	code, stdout, stderr, err := ctlRun(env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return code, stdout, stderr
}

// ctlRun is ctl for any goroutine: what would fail the test is an error.
func ctlRun(env []string, args ...string) (code int, stdout, stderr string, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, "", "", err
	}
	cmd := exec.Command(self)
	cmd.Args = append([]string{"hotcluster"}, args...)
	cmd.Env = append(append(os.Environ(), roleEnv+"=master"), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return 0, "", "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t1 := time.NewTimer(testTimeout)
	defer t1.Stop()
	select {
	case err = <-done:
	case <-t1.C:
		cmd.Process.Kill()
		<-done
		return 0, "", "", fmt.Errorf("hotcluster %v did not exit", args)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String(), nil
	}
	if err != nil {
		return 0, "", "", err
	}
	return 0, out.String(), errb.String(), nil
}

// mustCtl is ctl that fails the test unless the command succeeds.
func mustCtl(t *testing.T, env []string, args ...string) string {
	t.Helper()
	code, out, errs := ctl(t, env, args...)
	if code != 0 {
		t.Fatalf("hotcluster %v: exit %d: %s%s", args, code, out, errs)
	}
	return out
}

func statusOf(t *testing.T, env []string, args ...string) control.Status {
	t.Helper()
	var st control.Status
	out := mustCtl(t, env, append([]string{"status", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	return st
}

// eventStream is a running `hotcluster events`.
type eventStream struct {
	t     *testing.T
	lines chan control.Event
}

// watchEvents starts `hotcluster events` and returns once it is connected.
func watchEvents(t *testing.T, env []string, args ...string) *eventStream {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Args = append([]string{"hotcluster", "events"}, args...)
	cmd.Env = append(append(os.Environ(), roleEnv+"=master"), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &eventStream{t: t, lines: make(chan control.Event, 1024)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 2<<20)
		for sc.Scan() {
			var e control.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("events: %v: %s", err, sc.Bytes())
				continue
			}
			s.lines <- e
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-read
		// SIGTERM ends it cleanly, as Ctrl-C does: exit 0.
		if err := cmd.Wait(); err != nil {
			t.Errorf("hotcluster events: %v", err)
		}
	})
	s.next(func(e control.Event) bool { return e.Event == "connected" })
	return s
}

// next returns the first event that matches, skipping the others.
func (s *eventStream) next(match func(control.Event) bool) control.Event {
	s.t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		select {
		case e, ok := <-s.lines:
			if !ok {
				s.t.Fatal("the event stream ended")
			}
			if match(e) {
				return e
			}
		case <-deadline.C:
			s.t.Fatal("no such event within the test timeout")
		}
	}
}

func TestControlStatusReloadScaleStop(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "2", "--ready", "notify", "--listen", "web=127.0.0.1:0", "--name", "shop")
	addr := m.listenAddr("web")

	// The socket and its directory are private to the master's user.
	sock := filepath.Join(m.dir, "shop.sock")
	for path, want := range map[string]os.FileMode{m.dir: 0o700, sock: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %s, want %s", path, fi.Mode().Perm(), want)
		}
	}

	text := mustCtl(t, m.env, "status")
	for _, want := range []string{"shop: master pid " + strconv.Itoa(m.pid), "generation 1 serving, 2 workers", "web on " + addr, "SLOT  GEN  PID"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	st := statusOf(t, m.env)
	if st.PID != m.pid || st.Generation != 1 || st.Size != 2 || len(st.Workers) != 2 || len(st.Listeners) != 1 {
		t.Fatalf("status %+v", st)
	}
	for _, w := range st.Workers {
		if w.State != "ready" || w.PID == 0 || w.RSS == 0 || w.Generation != 1 {
			t.Errorf("worker %+v", w)
		}
	}

	ev := watchEvents(t, m.env)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	out := mustCtl(t, m.env, "reload")
	if !strings.Contains(out, "generation 2 ready in") {
		t.Errorf("reload said %q", out)
	}
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 2)
	ev.next(func(e control.Event) bool { return e.Event == "reload-start" && e.Generation == 2 })
	for range 2 {
		ev.next(func(e control.Event) bool {
			return e.Event == "fork" && e.Generation == 2 && e.PID != 0 && e.Slot != nil
		})
	}
	ev.next(func(e control.Event) bool { return e.Event == "reload-done" && e.Generation == 2 && e.Workers == 2 })
	ev.next(func(e control.Event) bool {
		return e.Event == "exit" && e.Generation == 1 && e.Status == "exit status 0"
	})
	if st := statusOf(t, m.env); st.LastReload == nil || !st.LastReload.OK || st.LastReload.Generation != 2 {
		t.Errorf("last reload %+v", st.LastReload)
	}

	var sc control.Scaled
	if err := json.Unmarshal([]byte(mustCtl(t, m.env, "scale", "--json", "+1")), &sc); err != nil || sc.Size != 3 {
		t.Fatalf("scale +1: %+v %v", sc, err)
	}
	ev.next(func(e control.Event) bool { return e.Event == "scale" && e.Workers == 3 })
	ev.next(func(e control.Event) bool { return e.Event == "ready" && e.Slot != nil && *e.Slot == 2 })
	mustCtl(t, m.env, "scale", "1")
	ev.next(func(e control.Event) bool { return e.Event == "scale" && e.Workers == 1 })
	for range 2 {
		ev.next(func(e control.Event) bool { return e.Event == "exit" && e.Generation == 2 })
	}
	if st := statusOf(t, m.env); st.Size != 1 || len(st.Workers) != 1 {
		t.Errorf("after scale 1: size %d, workers %+v", st.Size, st.Workers)
	}
	if code, _, errs := ctl(t, m.env, "scale", "-1"); code != 1 || !strings.Contains(errs, "keeps at least 1") {
		t.Errorf("scale -1 at 1 worker: exit %d: %s", code, errs)
	}
	if code, _, errs := ctl(t, m.env, "scale", "two"); code != 2 || !strings.Contains(errs, "want a worker count") {
		t.Errorf("scale two: exit %d: %s", code, errs)
	}

	out = mustCtl(t, m.env, "stop")
	if !strings.Contains(out, "stopped in") {
		t.Errorf("stop said %q", out)
	}
	// stop returned once the master stopped: it exits at once, its socket gone.
	if code := m.wait(); code != 0 {
		t.Errorf("master exit code %d", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
	if code, _, errs := ctl(t, m.env, "status", "--name", "shop"); code != 1 || !strings.Contains(errs, "no master is running") {
		t.Errorf("status after stop: exit %d: %s", code, errs)
	}
}

func TestControlReloadReportsFailure(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "crash-from-gen2", "--workers", "2", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	code, out, errs := ctl(t, m.env, "reload")
	assertNoFailures(t, stop())
	if code != 1 || !strings.Contains(errs, "reload failed: gen 2") || !strings.Contains(errs, "exited before it was ready") {
		t.Fatalf("reload of a crashing generation: exit %d: %s%s", code, out, errs)
	}
	st := statusOf(t, m.env)
	if st.Generation != 1 || st.LastReload == nil || st.LastReload.OK || !strings.Contains(st.LastReload.Error, "exited before it was ready") {
		t.Errorf("status after the failed reload: gen %d, last reload %+v", st.Generation, st.LastReload)
	}
	if text := mustCtl(t, m.env, "status"); !strings.Contains(text, "last reload: generation 2 FAILED") {
		t.Errorf("status text:\n%s", text)
	}
	assertServedBy(t, "tcp", addr, 1)
}

// A malformed, an oversized and a half-written request each get an error,
// and the master keeps answering.
func TestControlBadRequests(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0", "--name", "bad")
	sock := filepath.Join(m.dir, "bad.sock")
	ask := func(send []byte, closeWrite bool) string {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		go c.Write(send) // an oversized request is answered before it is all read
		if closeWrite {
			c.(*net.UnixConn).CloseWrite()
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for _, tc := range []struct {
		name  string
		send  []byte
		close bool
		want  string
	}{
		{"malformed", []byte("{\"cmd\":\n"), false, "bad request"},
		{"unknown command", []byte(`{"cmd":"explode"}` + "\n"), false, `unknown command \"explode\"`},
		{"unknown field", []byte(`{"cmd":"status","x":1}` + "\n"), false, "unknown field"},
		{"oversized", append([]byte(`{"cmd":"send","message":"`), make([]byte, 2<<20)...), false, "over 1052672 bytes"},
		{"half-written", []byte(`{"cmd":"sta`), true, "bad request"},
	} {
		if got := ask(tc.send, tc.close); !strings.Contains(got, tc.want) || !strings.Contains(got, `"ok":false`) {
			t.Errorf("%s: answer %q, want an error with %q", tc.name, got, tc.want)
		}
	}
	if st := statusOf(t, m.env); st.Generation != 1 || len(st.Workers) != 1 {
		t.Errorf("status after bad requests: %+v", st)
	}
}

func TestControlTwoInstances(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"XDG_RUNTIME_DIR=" + dir}
	self, _ := os.Executable()
	start := func(name string) *master {
		m := startCommandEnv(t, env, []string{"--env", roleEnv + "=lib", "--workers", "1", "--listen", "127.0.0.1:0", "--name", name}, self)
		m.waitLine(0, `serving \(master pid`)
		return m
	}
	a, b := start("alpha"), start("beta")
	if st := statusOf(t, env, "--name", "alpha"); st.PID != a.pid || st.Name != "alpha" {
		t.Errorf("status --name alpha: pid %d name %s, want %d", st.PID, st.Name, a.pid)
	}
	if st := statusOf(t, env, "--name", "beta"); st.PID != b.pid {
		t.Errorf("status --name beta: pid %d, want %d", st.PID, b.pid)
	}
	if code, _, errs := ctl(t, env, "status"); code != 2 || !strings.Contains(errs, "2 instances are running (alpha, beta): pick one with --name") {
		t.Errorf("status without --name: exit %d: %s", code, errs)
	}
	ls := mustCtl(t, env, "ls")
	for _, want := range []string{"alpha", "beta", strconv.Itoa(a.pid), strconv.Itoa(b.pid)} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls lacks %q:\n%s", want, ls)
		}
	}
	// A third of the same name fails before it binds anything.
	code, out := hotclusterEnv(t, env, "run", "--name", "alpha", "--listen", "127.0.0.1:0", "--", self)
	if code != 2 || !strings.Contains(out, "control: socket in use: a running master serves") {
		t.Errorf("a second alpha: exit %d: %s", code, out)
	}
	mustCtl(t, env, "reload", "--name", "beta")
	if st := statusOf(t, env, "--name", "alpha"); st.Generation != 1 {
		t.Errorf("alpha reloaded with beta: gen %d", st.Generation)
	}
	if st := statusOf(t, env, "--name", "beta"); st.Generation != 2 {
		t.Errorf("beta not reloaded: gen %d", st.Generation)
	}
}

// hotclusterEnv is hotcluster with env added.
func hotclusterEnv(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	code, out, errs := ctl(t, env, args...)
	return code, out + errs
}

// A client of another user is refused, even when the socket's modes would
// let it in.
func TestControlRefusesOtherUsers(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("running a client as another user needs root; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	nobody := lookupNobody(t)
	// A directory every user can enter, holding a copy of this binary that
	// nobody runs and the master's control directory.
	top, err := os.MkdirTemp("", "hotcluster-control-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "hc")
	self, _ := os.Executable()
	copyFile(t, self, bin)
	ctlDir := filepath.Join(top, "ctl")
	sock := filepath.Join(ctlDir, "private.sock")
	m := startCommand(t, []string{"--env", roleEnv + "=lib", "--workers", "1", "--listen", "127.0.0.1:0", "--control", sock}, self)
	m.waitLine(0, `serving \(master pid`)
	for path, want := range map[string]os.FileMode{ctlDir: 0o700, sock: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, want mode %s", path, fi.Mode(), want)
		}
	}
	asNobody := func() (int, string) {
		cmd := exec.Command(bin, "status", "--control", sock)
		cmd.Env = append(os.Environ(), roleEnv+"=master")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := asNobody(); code == 0 || !strings.Contains(out, "permission denied") {
		t.Errorf("nobody through the 0700 directory: exit %d: %s", code, out)
	}
	// Open the modes, as a careless administrator might: the master's own
	// check still refuses.
	os.Chmod(ctlDir, 0o755)
	os.Chmod(sock, 0o666)
	code, out := asNobody()
	if code != 1 || !strings.Contains(out, fmt.Sprintf("permission denied: uid %d", nobody)) || !strings.Contains(out, "is neither the master's user") {
		t.Errorf("nobody through open modes: exit %d: %s", code, out)
	}
	m.waitLine(0, `control: refused a connection: permission denied: uid `+strconv.Itoa(int(nobody)))
	if st := statusOf(t, nil, "--control", sock); st.PID != m.pid {
		t.Errorf("status as root after the refusal: %+v", st)
	}
}

func lookupNobody(t *testing.T) uint32 {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	n, err := strconv.Atoi(u.Uid)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// A worker whose RSS stays above --max-memory is replaced: its replacement
// is ready before it drains, and no request fails.
func TestMaxMemoryRecyclesWorker(t *testing.T) {
	t.Parallel()
	claim := filepath.Join(t.TempDir(), "hog")
	m := startOperated(t, "hog-once", "--workers", "2", "--ready", "notify", "--listen", "web=127.0.0.1:0",
		"--max-memory", "200M", "--env", "HOG_CLAIM="+claim, "--env", "HOG_MB=300")
	addr := m.listenAddr("web")
	sm, _ := m.waitLine(0, `HOGGING 300 MiB pid=(\d+)`)
	hog := sm[1]
	ev := watchEvents(t, m.env)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	rec := ev.next(func(e control.Event) bool { return e.Event == "recycle" })
	if strconv.Itoa(rec.PID) != hog || !strings.Contains(rec.Reason, "above --max-memory 200.0MiB") {
		t.Errorf("recycle event %+v, want pid %s over the limit", rec, hog)
	}
	ready := ev.next(func(e control.Event) bool { return e.Event == "ready" && e.Slot != nil && *e.Slot == *rec.Slot })
	drain := ev.next(func(e control.Event) bool { return e.Event == "draining" })
	if strconv.Itoa(drain.PID) != hog || drain.Reason != "replaced by pid "+strconv.Itoa(ready.PID) {
		t.Errorf("draining %+v after the replacement %+v was ready, want pid %s", drain, ready, hog)
	}
	ev.next(func(e control.Event) bool { return e.Event == "exit" && strconv.Itoa(e.PID) == hog })
	assertNoFailures(t, stop())
	st := statusOf(t, m.env)
	if st.Generation != 1 || len(st.Workers) != 2 {
		t.Fatalf("after recycling: %+v", st)
	}
	for _, w := range st.Workers {
		if strconv.Itoa(w.PID) == hog || w.State != "ready" {
			t.Errorf("worker %+v", w)
		}
	}
}

func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "2", "--ready", "notify", "--listen", "web=127.0.0.1:0", "--metrics", "127.0.0.1:0")
	sm, _ := m.waitLine(0, `metrics on (http://\S+/metrics)`)
	url := sm[1]
	mustCtl(t, m.env, "reload")
	// reload returns once gen 2 serves; gen 1 may still be draining.
	m.waitLine(0, `gen 1 drained`)
	fams := scrape(t, url)
	for _, tc := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"hotcluster_workers", map[string]string{"state": "ready"}, 2},
		{"hotcluster_generation", nil, 2},
		{"hotcluster_reloads_total", map[string]string{"outcome": "ready"}, 1},
		{"hotcluster_reloads_total", map[string]string{"outcome": "failed"}, 0},
		{"hotcluster_worker_restarts_total", nil, 0},
	} {
		if got, ok := metricValue(fams, tc.family, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.family, tc.labels, got, ok, tc.want)
		}
	}
	if f := fams["hotcluster_worker_resident_memory_bytes"]; f == nil || len(f.GetMetric()) != 2 || f.GetMetric()[0].GetGauge().GetValue() <= 0 {
		t.Errorf("worker RSS series: %v", f)
	}
	if f := fams["hotcluster_reload_duration_seconds"]; f == nil || f.GetMetric()[0].GetHistogram().GetSampleCount() != 1 {
		t.Errorf("reload duration: %v", f)
	}
}

// --log-format json: every line is a JSON object, hotcluster's own and
// the workers' (see logs_test.go for those).
func TestJSONLog(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "1", "--listen", "127.0.0.1:0", "--log-format", "json")
	n := 0
	for _, l := range m.output() {
		var v struct{ Time, Level, Msg string }
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Time == "" || v.Level == "" || v.Msg == "" {
			t.Errorf("not a JSON log line: %q (%v)", l, err)
		}
		n++
	}
	if n < 3 {
		t.Errorf("%d JSON lines of the master: %q", n, m.output())
	}
	if code, _, errs := ctl(t, m.env, "run", "--log-format", "xml", "--", "x"); code != 2 || !strings.Contains(errs, "--log-format") {
		t.Errorf("--log-format xml: exit %d: %s", code, errs)
	}
}

// Root finds, by name, an instance that runs as another user (a service
// with User=www-data, say), and ls lists it with its socket.
func TestRootFindsOtherUsersInstances(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a master as another user; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	nobody := lookupNobody(t)
	top, err := os.MkdirTemp("", "hotcluster-otheruser-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	tmp := filepath.Join(top, "tmp")
	if err := os.Mkdir(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	for dir, mode := range map[string]os.FileMode{top: 0o755, tmp: 0o777 | os.ModeSticky} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(top, "hc")
	self, _ := os.Executable()
	copyFile(t, self, bin)
	id := strconv.Itoa(int(nobody))
	cmd := exec.Command(setpriv, "--reuid="+id, "--regid="+id, "--clear-groups", bin, "run", "--name", "svc",
		"--env", roleEnv+"=lib", "--workers", "1", "--listen", "127.0.0.1:0", "--", bin)
	// As a system service: no XDG_RUNTIME_DIR, so its socket is in
	// $TMPDIR/hotcluster-UID.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") && !strings.HasPrefix(kv, "TMPDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, roleEnv+"=master", "TMPDIR="+tmp, "GORACE=atexit_sleep_ms=0")
	m := startMasterCmd(t, cmd)
	m.waitLine(0, `serving \(master pid`)
	m.waitLine(0, `control socket `+regexpQuote(filepath.Join(tmp, "hotcluster-"+id, "svc.sock")))

	// Root, with a runtime directory of its own that holds nothing.
	env := []string{"XDG_RUNTIME_DIR=" + t.TempDir(), "TMPDIR=" + tmp}
	if st := statusOf(t, env, "--name", "svc"); st.PID != m.pid || st.Name != "svc" {
		t.Errorf("status --name svc as root: %+v, want master %d", st, m.pid)
	}
	ls := mustCtl(t, env, "ls")
	if !strings.Contains(ls, "SOCKET") || !strings.Contains(ls, filepath.Join(tmp, "hotcluster-"+id, "svc.sock")) {
		t.Errorf("ls as root:\n%s", ls)
	}
	// Without a name too: root has none of its own, and the service is the
	// only instance it can see.
	if st := statusOf(t, env); st.PID != m.pid || st.Name != "svc" {
		t.Errorf("status without --name as root: %+v, want master %d", st, m.pid)
	}
}
