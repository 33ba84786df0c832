package main

import (
	"os"
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
		{[]string{"unit", "--", "--", self}, `Required flag "name" not set`},
	} {
		if code, out := hotcluster(t, tc.args...); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("hotcluster %v: exit %d, output:\n%s\nwant non-zero and %q", tc.args, code, out, tc.want)
		}
	}
}
