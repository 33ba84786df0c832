package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// A reload re-reads the config file: the new worker count and environment
// apply to the new generation; a file that no longer parses fails the
// reload and changes nothing.
func TestReloadAppliesConfigFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "hotcluster.toml")
	write := func(s string) {
		t.Helper()
		// Atomically, as an editor or a deployment tool would.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(`
workers = 1
ready = "notify"
listen = ["web=127.0.0.1:0"]
env = ["` + roleEnv + `=lib", "EXTRA=one"]
`)
	dir := t.TempDir()
	self, _ := os.Executable()
	m := &operated{startCommandEnv(t, []string{"XDG_RUNTIME_DIR=" + dir}, []string{"--config", file}, self), []string{"XDG_RUNTIME_DIR=" + dir}, filepath.Join(dir, "hotcluster")}
	addr := m.listenAddr("web")
	if st := statusOf(t, m.env); st.Size != 1 || len(st.Workers) != 1 {
		t.Fatalf("from the file: %+v", st)
	}
	m.waitLine(0, `HOTCLUSTER_GENERATION=1 .*EXTRA=one `)

	write(`
workers = 2
ready = "notify"
listen = ["web=127.0.0.1:0"]
env = ["` + roleEnv + `=lib", "EXTRA=two"]
`)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	mustCtl(t, m.env, "reload")
	assertNoFailures(t, stop())
	m.waitLine(0, `gen 1 drained`)
	st := statusOf(t, m.env)
	if st.Generation != 2 || st.Size != 2 || len(st.Workers) != 2 {
		t.Fatalf("after editing the file and reloading: %+v", st)
	}
	// Both workers of gen 2 started with the file's new env.
	_, next := m.waitLine(0, `HOTCLUSTER_GENERATION=2 .*EXTRA=two `)
	m.waitLine(next, `HOTCLUSTER_GENERATION=2 .*EXTRA=two `)

	for _, tc := range []struct{ file, want string }{
		{"workers = \"many\"\n", `key "workers": want an integer`},
		{"workers = 3\nlisten = [\n", file + ":"},
		{"workers = 3\nworkres = 2\n", `"workres"`},
		{"workers = 0\n", "--workers 0: want 1 or more"},
	} {
		write(tc.file)
		code, out, errs := ctl(t, m.env, "reload")
		if code != 1 || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "the serving generation keeps serving") {
			t.Errorf("reload with %q: exit %d: %s%s, want %q", tc.file, code, out, errs, tc.want)
		}
	}
	if st := statusOf(t, m.env); st.Generation != 2 || st.Size != 2 || len(st.Workers) != 2 {
		t.Errorf("after broken files: %+v", st)
	}
	assertServedBy(t, "tcp", addr, 2)
}
