package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// writeConfig writes text to a file in a fresh directory and returns its
// path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "app.toml")
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// selfExe is an executable that ResolveCommand accepts.
func selfExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// wantUsageError fails unless err is a usage error containing every part.
func wantUsageError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Errorf("error %q (%T) is not a usage error (exit code 2)", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestConfigFileApplied(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	file := writeConfig(t, `
workers = 3
listen = ["web=127.0.0.1:0", "unix:///tmp/hotcluster-config-test.sock"]
env = ["A=1", "B=two words"]
ready-timeout = "30s"
stop-signal = "INT"
handoff = "shared"
log-format = "json"
command = ["`+exe+`", "--port", "8080"]
`)
	rc, err := reparseRun([]string{"hotcluster", "run", "--config", file})
	if err != nil {
		t.Fatal(err)
	}
	p := rc.Pool
	if p.Workers != 3 {
		t.Errorf("workers = %d, want 3", p.Workers)
	}
	if want := []string{"A=1", "B=two words"}; !slices.Equal(p.Env, want) {
		t.Errorf("env = %q, want %q", p.Env, want)
	}
	if len(rc.Sockets.Specs) != 2 || rc.Sockets.Specs[0].Name != "web" || rc.Sockets.Specs[1].Network != "unix" {
		t.Errorf("listen = %+v, want web=127.0.0.1:0 and a unix socket", rc.Sockets.Specs)
	}
	if p.ReadyTimeout != 30*time.Second {
		t.Errorf("ready-timeout = %s, want 30s", p.ReadyTimeout)
	}
	if p.StopSignal.String() != "interrupt" {
		t.Errorf("stop-signal = %v, want SIGINT", p.StopSignal)
	}
	if !rc.Sockets.Shared {
		t.Errorf("handoff = auto, want shared")
	}
	if want := []string{exe, "--port", "8080"}; !slices.Equal(p.Command.Args, want) || p.Command.Path != exe {
		t.Errorf("command = %q (path %q), want %q", p.Command.Args, p.Command.Path, want)
	}
	// What the file does not set keeps its default.
	if p.DrainTimeout != 30*time.Second {
		t.Errorf("drain-timeout = %s, want the default 30s", p.DrainTimeout)
	}
}

func TestConfigCommandLineWins(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	file := writeConfig(t, `
workers = 3
env = ["FROM=file"]
listen = [":8080"]
drain-timeout = "5s"
command = ["/nonexistent/from-file"]
`)
	rc, err := reparseRun([]string{"hotcluster", "run", "--config", file, "-n", "5", "--env", "FROM=flag", "--", exe, "x"})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Pool.Workers != 5 {
		t.Errorf("workers = %d, want 5 from -n", rc.Pool.Workers)
	}
	if want := []string{"FROM=flag"}; !slices.Equal(rc.Pool.Env, want) {
		t.Errorf("env = %q, want %q: the flags replace the file's list", rc.Pool.Env, want)
	}
	if want := []string{exe, "x"}; !slices.Equal(rc.Pool.Command.Args, want) {
		t.Errorf("command = %q, want %q from after --", rc.Pool.Command.Args, want)
	}
	// What only the file sets still applies.
	if len(rc.Sockets.Specs) != 1 || rc.Pool.DrainTimeout != 5*time.Second {
		t.Errorf("listen = %v, drain-timeout = %s; want the file's", rc.Sockets.Specs, rc.Pool.DrainTimeout)
	}
	// A file value is checked as the flag would be.
	file = writeConfig(t, "workers = 0\n")
	_, err = reparseRun([]string{"hotcluster", "run", "--config", file, "--", exe})
	wantUsageError(t, err, "--workers 0")
}

func TestConfigUnknownKey(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "wokers = 3\nlisten = [\":8080\"]\n")
	_, err := reparseRun([]string{"hotcluster", "run", "--config", file, "--", selfExe(t)})
	wantUsageError(t, err, file, `unknown key "wokers"`, "valid keys", "workers", "listen", "command", "ready-timeout")
	if strings.Contains(err.Error(), "help") {
		t.Errorf("error %q lists help as a valid key", err)
	}

	// Aliases, --config itself and tables are not keys either.
	file = writeConfig(t, "n = 3\nconfig = \"x.toml\"\n[server]\nport = 1\n")
	_, err = reparseRun([]string{"hotcluster", "run", "--config", file, "--", selfExe(t)})
	wantUsageError(t, err, `unknown keys "config", "n", "server"`)
}

func TestConfigMalformed(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "workers = 3\n# a comment\nready-timeout = \nlisten = []\n")
	_, err := reparseRun([]string{"hotcluster", "run", "--config", file, "--", selfExe(t)})
	wantUsageError(t, err, file+":3:")
}

func TestConfigWrongTypes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{`workers = "four"`, `key "workers": want an integer, not the string "four"`},
		{`workers = 2.5`, `key "workers": want an integer`},
		{`ready-timeout = 30`, `key "ready-timeout": want a duration string such as "30s", not the integer 30`},
		{`ready-timeout = "30"`, `key "ready-timeout": "30": want a duration`},
		{`listen = 8080`, `key "listen": want an array of strings, not the integer 8080`},
		{`env = ["A=1", 2]`, `key "env": want an array of strings, not an array of strings and integers`},
		{`ready = true`, `key "ready": want a string, not true`},
		{`command = "./server --port 8080"`, `key "command": want the program and its arguments`},
		{`command = []`, `key "command": want the program and its arguments`},
		{"[listen]\na = 1", `key "listen": want an array of strings, not a table`},
	} {
		file := writeConfig(t, tc.text+"\n")
		_, err := reparseRun([]string{"hotcluster", "run", "--config", file, "--", selfExe(t)})
		wantUsageError(t, err, file, tc.want)
	}
}

// Development mode from the file: its flags count as given.
func TestConfigDevMode(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, `
watch = ["."]
ext = ".go,.html"
build = "go build -o {out} ."
command = ["{out}", "--dev"]
`)
	rc, err := reparseRun([]string{"hotcluster", "run", "--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Dev == nil || rc.Dev.Build != "go build -o {out} ." || !slices.Equal(rc.Dev.Command, []string{"{out}", "--dev"}) {
		t.Fatalf("dev = %+v, want the file's build and command", rc.Dev)
	}
	if !slices.Equal(rc.Watch.Exts, []string{".go", ".html"}) {
		t.Errorf("ext = %q", rc.Watch.Exts)
	}
}

// A single string is a list of one.
func TestConfigStringForList(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, `listen = "web=:8080"`)
	rc, err := reparseRun([]string{"hotcluster", "run", "--config", file, "--", selfExe(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Sockets.Specs) != 1 || rc.Sockets.Specs[0].Name != "web" {
		t.Errorf("listen = %+v, want web=:8080", rc.Sockets.Specs)
	}
}

func TestConfigMissingFile(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope.toml")
	_, err := reparseRun([]string{"hotcluster", "run", "--config", missing, "--", selfExe(t)})
	wantUsageError(t, err, missing, "no such file")
}

// hotcluster.toml in the working directory is read unless --config says
// otherwise. Not parallel: it changes directory.
func TestConfigDefaultFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	exe := selfExe(t)
	if err := os.WriteFile(defaultConfigFile, []byte("workers = 2\ncommand = [\""+exe+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := reparseRun([]string{"hotcluster", "run"})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Pool.Workers != 2 || !slices.Equal(rc.Pool.Command.Args, []string{exe}) {
		t.Errorf("workers = %d, command = %q; want hotcluster.toml's 2 and %q", rc.Pool.Workers, rc.Pool.Command.Args, exe)
	}

	other := filepath.Join(dir, "other.toml")
	if err := os.WriteFile(other, []byte("workers = 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rc, err = reparseRun([]string{"hotcluster", "run", "--config", other, "--", exe}); err != nil {
		t.Fatal(err)
	}
	if rc.Pool.Workers != 7 {
		t.Errorf("workers = %d, want 7 from --config other.toml alone", rc.Pool.Workers)
	}

	// --config "" reads no file: no command then.
	_, err = reparseRun([]string{"hotcluster", "run", "--config", ""})
	wantUsageError(t, err, "no worker command")

	// The exit code of a bad file is 2.
	if err := os.WriteFile(defaultConfigFile, []byte("bogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := Main([]string{"hotcluster", "run", "--", exe}); code != 2 {
		t.Errorf("exit code %d for an unknown key, want 2", code)
	}
}

// Reparsing is safe from several goroutines at once (run with -race).
func TestReparseRunConcurrent(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	file := writeConfig(t, "workers = 4\nlisten = [\":8080\"]\n")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := reparseRun([]string{"hotcluster", "run", "--config", file, "--env", "A=1", "--", exe})
			if err == nil && rc.Pool.Workers != 4 {
				err = errors.New("workers not from the file")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestReparseRunNotRun(t *testing.T) {
	t.Parallel()
	_, err := reparseRun([]string{"hotcluster"})
	wantUsageError(t, err, "not a hotcluster run command line")
	_, err = reparseRun([]string{"hotcluster", "run", "--no-such-flag", "--", "x"})
	wantUsageError(t, err, "no-such-flag")
}

func TestConfigFlagTypes(t *testing.T) {
	t.Parallel()
	// Every run flag but --config can be set from the file.
	keys := configKeys(runCommand().Flags)
	for _, f := range runCommand().Flags {
		name := f.Names()[0]
		if _, ok := keys[name]; !ok && name != configFlagName {
			t.Errorf("flag --%s cannot be set from the config file", name)
		}
	}
	if _, ok := keys[configFlagName]; ok {
		t.Errorf("--config can be set from the config file")
	}
	defer func() {
		if recover() == nil {
			t.Errorf("withConfigFile accepted a flag type altsrc cannot set")
		}
	}()
	withConfigFile([]cli.Flag{&cli.TimestampFlag{Name: "at"}})
}

// FuzzConfigFile: whatever the file holds, hotcluster run's parsing returns
// a configuration or an error, and never panics.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte("workers = 4\nlisten = [\":8080\"]\nenv = [\"A=1\"]\nready-timeout = \"30s\"\ncommand = [\"/bin/true\"]\n"))
	f.Add([]byte("workers = \"x\"\n"))
	f.Add([]byte("[listen]\na.b.c = 1\n"))
	f.Add(exampleConfig())
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(dir, "fuzz.toml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// Decoding alone first, then the whole of run's parsing. The
		// command is absolute so that nothing depends on the directory.
		if _, err := decodeConfigFile(file, data, runCommand().Flags); err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("decode error %q is not a usage error", err)
			}
		}
		rc, err := reparseRun([]string{"hotcluster", "run", "--config", file})
		if (rc == nil) == (err == nil) {
			t.Errorf("reparseRun = %v, %v: want exactly one", rc, err)
		}
	})
}

// Development mode's command-line mistakes are usage errors (exit 2).
func TestDevModeUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hotcluster", "run", "--watch", ".", "--", "{out}"}, "no --build to produce it"},
		{[]string{"hotcluster", "run", "--build", "make", "--", "{out}"}, "does not write {out}"},
	} {
		_, err := reparseRun(tc.args)
		wantUsageError(t, err, tc.want)
	}
}
