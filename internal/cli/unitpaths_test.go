package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unitIn runs `hotcluster unit ARGS` in dir and returns its exit code,
// the units and the warnings.
func unitIn(t *testing.T, dir string, args ...string) (code int, units, warnings string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Args = append([]string{"hotcluster", "unit"}, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), roleEnv+"=master")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// unitLine returns the value of key= in a unit.
func unitLine(units, key string) string {
	for _, l := range strings.Split(units, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

// A command line that works in the shell works under systemd: the worker
// command and the path flags become absolute, and the service starts where
// the shell was (or in --dir).
func TestUnitAbsolutePaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.toml"), []byte("workers = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, units, warns := unitIn(t, dir, "--name", "app", "--exec", "/usr/local/bin/hotcluster", "--",
		"--listen", ":8080", "--config=app.toml", "--pidfile", "run/app.pid", "--", "./server", "--root", "www")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, warns)
	}
	want := "/usr/local/bin/hotcluster run --name app --listen :8080 --config=" + filepath.Join(dir, "app.toml") +
		" --pidfile " + filepath.Join(dir, "run/app.pid") + " -- " + filepath.Join(dir, "server") + " --root www"
	if got := unitLine(units, "ExecStart"); got != want {
		t.Errorf("ExecStart=%s\nwant       %s", got, want)
	}
	if got := unitLine(units, "WorkingDirectory"); got != dir {
		t.Errorf("WorkingDirectory=%q, want %q", got, dir)
	}

	// --dir: the service starts there, and the command is found there.
	code, units, warns = unitIn(t, filepath.Dir(dir), "--name", "app", "--exec", "/usr/local/bin/hotcluster", "--",
		"--dir", filepath.Base(dir), "--", "./server")
	if code != 0 {
		t.Fatalf("--dir: exit %d: %s", code, warns)
	}
	if got, want := unitLine(units, "ExecStart"), "/usr/local/bin/hotcluster run --name app --dir "+dir+" -- "+filepath.Join(dir, "server"); got != want {
		t.Errorf("ExecStart=%s\nwant       %s", got, want)
	}
	if got := unitLine(units, "WorkingDirectory"); got != dir {
		t.Errorf("--dir: WorkingDirectory=%q, want %q", got, dir)
	}

	// A bare name, as this shell's PATH finds it: systemd's PATH is
	// another.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	sleep, _ = filepath.Abs(sleep)
	_, units, _ = unitIn(t, "/", "--name", "app", "--exec", "/usr/local/bin/hotcluster", "--", "--", "sleep", "600")
	if got, want := unitLine(units, "ExecStart"), "/usr/local/bin/hotcluster run --name app -- "+sleep+" 600"; got != want {
		t.Errorf("ExecStart=%s\nwant       %s", got, want)
	}
}

// Paths that will not be there for the service are warned about: under
// /tmp, in a directory the service's user cannot enter, a User= that does
// not exist. A unit whose paths are all fine gets no warning.
func TestUnitWarnsAboutPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() // under $TMPDIR, mode 0700: only its owner enters it
	if err := os.WriteFile(filepath.Join(dir, "server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, warns := unitIn(t, dir, "--name", "app", "--user", "nobody", "--exec", "/usr/local/bin/hotcluster", "--", "--", "./server", "app.js")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, warns)
	}
	server, closed := filepath.Join(dir, "server"), filepath.Dir(dir)
	for _, want := range []string{
		"hotcluster: warning: the hotcluster binary /usr/local/bin/hotcluster does not exist here",
		"hotcluster: warning: WorkingDirectory= " + dir + ": nobody cannot reach it: " + closed + " is 0700, uid ",
		"hotcluster: warning: the worker command " + server + ": nobody cannot reach it: " + closed + " is 0700",
		"hotcluster: warning: the worker's file app.js " + filepath.Join(dir, "app.js") + ": nobody cannot reach it",
	} {
		if !strings.Contains(warns, want) {
			t.Errorf("no %q in:\n%s", want, warns)
		}
	}
	if strings.HasPrefix(dir, "/tmp/") && !strings.Contains(warns, "hotcluster: warning: the worker command "+server+" is under /tmp, which is emptied at boot") {
		t.Errorf("no warning about /tmp in:\n%s", warns)
	}

	if _, _, warns := unitIn(t, "/", "--name", "app", "--user", "no-such-user-hc", "--exec", "/bin/sh", "--", "--", "/bin/sleep"); !strings.Contains(warns, "User=no-such-user-hc: no such user here") {
		t.Errorf("no warning about User=:\n%s", warns)
	}
	if code, _, warns := unitIn(t, "/", "--name", "app", "--user", "nobody", "--exec", "/bin/sh", "--", "--", "/bin/sleep", "600"); code != 0 || warns != "" {
		t.Errorf("a unit whose paths are fine: exit %d, warnings:\n%s", code, warns)
	}
}
