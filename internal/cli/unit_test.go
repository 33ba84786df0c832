package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnitCommand(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	code, out := hotcluster(t, "unit", "--name", "app", "--socket", "--exec", "/usr/local/bin/hotcluster",
		"--", "--listen", "web=:8080", "--drain-timeout", "50s", "--", self, "--flag")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"# file: app.service", "Type=notify", "ExecReload=/bin/kill -HUP $MAINPID",
		"ExecStart=/usr/local/bin/hotcluster run --name app --listen web=:8080 --drain-timeout 50s -- " + self + " --flag",
		"TimeoutStopSec=65s", "# file: app.socket", "ListenStream=8080", "FileDescriptorName=web", "ReusePort=yes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}

	dir := t.TempDir()
	if code, out := hotcluster(t, "unit", "--name", "app", "--out", dir, "--", "--listen", ":8080", "--", self); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "app.service")); err != nil || !strings.Contains(string(b), "[Service]") {
		t.Errorf("app.service: %q, %v", b, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"unit", "--name", "app", "--", "--listen", "bad:port", "--", self}, `invalid port "port"`},
		{[]string{"unit", "--name", "app", "--", "--", "./no-such-server"}, "no-such-server does not exist"},
		{[]string{"unit", "--name", "app", "--socket", "--", "--", self}, "--socket needs at least one --listen"},
		{[]string{"unit", "--", "--", self}, `unit: --name is required`},
	} {
		if code, out := hotcluster(t, tc.args...); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("hotcluster %v: exit %d, output:\n%s\nwant non-zero and %q", tc.args, code, out, tc.want)
		}
	}
}

// A unit made where run would read ./hotcluster.toml gets that file by its
// absolute path: the service runs in another directory.
func TestUnitKeepsTheConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hotcluster.toml"), []byte("workers = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	cmd := exec.Command(self, "unit", "--name", "web", "--exec", "/usr/local/bin/hotcluster", "--", "--listen", "127.0.0.1:8080", "--", self)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), roleEnv+"=master")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unit: %v\n%s", err, out)
	}
	want := "ExecStart=/usr/local/bin/hotcluster run --config " + filepath.Join(dir, "hotcluster.toml") + " --name web --listen 127.0.0.1:8080 -- " + self
	if !strings.Contains(string(out), want) {
		t.Errorf("no %q in:\n%s", want, out)
	}
}
