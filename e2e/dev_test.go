package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// writeAtomic saves a file the way editors do: a temporary file in the
// same directory, renamed over the target.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedMsg makes one request and returns its msg= value.
func servedMsg(t *testing.T, addr string) string {
	t.Helper()
	body, err := get("tcp", addr, "/")
	if err != nil {
		t.Fatal(err)
	}
	sm := regexp.MustCompile(`msg=(\S*)`).FindStringSubmatch(body)
	if sm == nil {
		t.Fatalf("answer %q", body)
	}
	return sm[1]
}

// startDev runs the test binary's devapp role in development mode on dir,
// with build as the build command. It returns the master's TMPDIR, private
// to the test, so that every file hotcluster makes can be seen.
func startDev(t *testing.T, dir, build string, extra ...string) (*master, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	args := append([]string{"--env", roleEnv + "=devapp", "--workers", "2", "--listen", "web=127.0.0.1:0",
		"--watch", dir, "--dir", dir, "--build", build}, extra...)
	return startCommandEnv(t, []string{"TMPDIR=" + tmp, "XDG_RUNTIME_DIR=" + tmp}, args, self, "{out}"), tmp
}

func TestDevEditSwapsGenerationsWithoutFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg.txt")
	writeAtomic(t, msg, "one")
	m, tmp := startDev(t, dir, "cp msg.txt {out}")
	addr := m.listenAddr("web")
	m.waitLine(0, `gen 1 ready in \S+ \(build \S+, manual reload\)`)
	if got := servedMsg(t, addr); got != "one" {
		t.Fatalf("served %q, want one", got)
	}
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4, KeepAlive: true})
	for i, content := range []string{"two", "three", "four"} {
		gen := i + 2
		writeAtomic(t, msg, content)
		m.waitLine(0, fmt.Sprintf(`gen %d ready in \S+ \(build \S+, 1 file changed: msg.txt\)`, gen))
		if got := servedMsg(t, addr); got != content {
			t.Fatalf("after edit %d served %q, want %q", i+1, got, content)
		}
	}
	assertNoFailures(t, stop())
	// Outputs of generations that ended are gone: only gen 4's is left.
	m.waitLine(0, `gen 3 drained`)
	eventually(t, "one build output left", func() bool {
		outs, _ := filepath.Glob(filepath.Join(tmp, "hotcluster-build-*", "out-*"))
		return len(outs) == 1 && strings.HasSuffix(outs[0], "out-4")
	})
}

func TestDevRealGoBuild(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go toolchain here: %v", err)
	}
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module devapp\n\ngo 1.26\n"), 0o644))
	// A server that speaks no protocol: fd 3 and the standard library.
	src := func(msg string) string {
		return `package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

const msg = "` + msg + `"

func main() {
	ln, err := net.FileListener(os.NewFile(3, "web"))
	if err != nil {
		panic(err)
	}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "msg=%s\n", msg)
	}))
}
`
	}
	main := filepath.Join(dir, "main.go")
	writeAtomic(t, main, src("v1"))
	m := startCommand(t, []string{"--workers", "2", "--listen", "web=127.0.0.1:0", "--watch", dir, "--dir", dir,
		"--ext", ".go", "--ready-delay", "200ms", "--build", "go build -o {out} ."}, "{out}")
	addr := m.listenAddr("web")
	m.waitReady(1)
	if got := servedMsg(t, addr); got != "v1" {
		t.Fatalf("served %q", got)
	}
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	// A compile error keeps gen 1 serving and shows the compiler's message.
	writeAtomic(t, main, strings.Replace(src("v2"), "func main() {", "func main() { undefinedThing()", 1))
	m.waitLine(0, `build failed after`)
	m.waitLine(0, `undefined: undefinedThing`)
	if got := servedMsg(t, addr); got != "v1" {
		t.Fatalf("after a failed build served %q, want v1", got)
	}
	writeAtomic(t, main, src("v3"))
	m.waitLine(0, `gen 2 ready in \S+ \(build \S+, 1 file changed: main.go\)`)
	if got := servedMsg(t, addr); got != "v3" {
		t.Fatalf("served %q, want v3", got)
	}
	assertNoFailures(t, stop())
}

func TestDevIgnoredAndBurstChanges(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg.txt")
	writeAtomic(t, msg, "one")
	m, _ := startDev(t, dir, "cp msg.txt {out}", "--ext", ".txt")
	addr := m.listenAddr("web")
	m.waitReady(1)
	// Ignored: a filtered extension, .git, node_modules, an editor swap file.
	for _, p := range []string{"notes.md", ".git/index.txt", "node_modules/x/y.txt", ".msg.txt.swp"} {
		path := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// 100 writes in a burst, then a file in a new subdirectory: each must
	// give exactly one build, whose line names only its own files.
	for i := 0; i < 100; i++ {
		if err := os.WriteFile(msg, []byte(fmt.Sprintf("burst%d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m.waitLine(0, `gen 2 ready in \S+ \(build \S+, 1 file changed: msg.txt\)`)
	if got := servedMsg(t, addr); got != "burst99" {
		t.Fatalf("served %q, want burst99", got)
	}
	sub := filepath.Join(dir, "new", "deeper")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "marker.txt"), []byte("m"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.waitLine(0, `gen 3 ready in \S+ \(build \S+, 1 file changed: marker.txt\)`)
	if n := m.count(`^hotcluster: building`); n != 3 {
		t.Errorf("%d builds, want 3 (start, burst, new subdirectory)", n)
	}
}

func TestDevChangeDuringSlowBuildServesNewest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg.txt")
	writeAtomic(t, msg, "one")
	// The build copies the message, then takes its time: a change during
	// that time supersedes it.
	m, _ := startDev(t, dir, `cp msg.txt {out} && if [ "$(cat {out})" = slow ]; then sleep 30; fi`)
	addr := m.listenAddr("web")
	m.waitReady(1)
	writeAtomic(t, msg, "slow")
	_, next := m.waitLine(0, `building \(1 file changed: msg.txt\)`)
	writeAtomic(t, msg, "newest")
	m.waitLine(next, `gen 2 ready in`)
	if got := servedMsg(t, addr); got != "newest" {
		t.Fatalf("served %q, want newest", got)
	}
	if n := m.count(`gen 3 ready`); n != 0 {
		t.Error("the superseded build became a generation")
	}
}

func TestDevInterruptLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg.txt")
	writeAtomic(t, msg, "one")
	m, tmp := startDev(t, dir, `cp msg.txt {out} && if [ "$(cat {out})" = slow ]; then sleep 300; fi`)
	m.waitReady(1)
	writeAtomic(t, msg, "slow")
	m.waitLine(0, `building \(1 file changed: msg.txt\)`)
	var kids []int
	eventually(t, "a build and 2 workers running", func() bool {
		kids = children(m.pid)
		return len(kids) == 3
	})
	m.signal(syscall.SIGINT)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d after SIGINT, want 0", code)
	}
	for _, pid := range kids {
		eventually(t, fmt.Sprintf("process %d gone", pid), func() bool { return !alive(pid) })
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	// TMPDIR is also XDG_RUNTIME_DIR here: the directory of control
	// sockets stays, as a runtime directory's do, but empty.
	if len(left) == 1 && left[0].Name() == "hotcluster" {
		sockets, err := os.ReadDir(filepath.Join(tmp, "hotcluster"))
		if err != nil || len(sockets) != 0 {
			t.Errorf("left in the control socket directory: %v %v", sockets, err)
		}
		left = nil
	}
	if len(left) != 0 {
		t.Errorf("left in TMPDIR after SIGINT: %v", left)
	}
}

// hotcluster reload in development mode rebuilds and reports the outcome:
// the new generation, or the build's failure.
func TestDevReloadWaitsForTheBuild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg.txt")
	writeAtomic(t, msg, "one")
	m, tmp := startDev(t, dir, `grep -qv broken msg.txt && cp msg.txt {out}`, "--name", "dev")
	m.waitReady(1)
	env := []string{"XDG_RUNTIME_DIR=" + tmp}
	if out := mustCtl(t, env, "reload"); !strings.Contains(out, "generation 2 ready in") {
		t.Errorf("reload: %q", out)
	}
	// The watcher rebuilds on its own too: stop it from racing the reload
	// by breaking the file and waiting for that build to fail first.
	writeAtomic(t, msg, "broken")
	m.waitLine(0, `build failed after`)
	code, out, errs := ctl(t, env, "reload")
	if code != 1 || !strings.Contains(errs, "reload failed: build failed: exit status 1") {
		t.Errorf("reload with a broken build: exit %d: %s%s", code, out, errs)
	}
	if got := servedMsg(t, m.listenAddr("web")); got != "one" {
		t.Errorf("served %q after the failed build, want one", got)
	}
}
