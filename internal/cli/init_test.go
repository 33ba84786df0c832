package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The example loads as written, provided ./server exists. Not parallel: it
// changes directory.
func TestInitExampleLoads(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("server", []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code := Main([]string{"hotcluster", "init"}); code != 0 {
		t.Fatalf("hotcluster init: exit code %d", code)
	}
	data, err := os.ReadFile(defaultConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(defaultConfigFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode of %s: %v, %v; want 0644", defaultConfigFile, fi.Mode(), err)
	}
	rc, err := reparseRun([]string{"hotcluster", "run"})
	if err != nil {
		t.Fatalf("the example does not load: %v\n%s", err, data)
	}
	if !slices.Equal(rc.Pool.Command.Args, []string{"./server"}) || len(rc.Sockets.Specs) != 1 {
		t.Errorf("command %q, listen %v; want the example's ./server on :8080", rc.Pool.Command.Args, rc.Sockets.Specs)
	}
	// No temporary file is left behind.
	if ents, _ := os.ReadDir("."); len(ents) != 2 {
		t.Errorf("directory holds %v, want server and %s", ents, defaultConfigFile)
	}
}

// Every key of the example, uncommented, has a valid value, and every flag
// a file may set is in it, with its usage.
func TestInitExampleKeys(t *testing.T) {
	t.Parallel()
	text := string(exampleConfig())
	key := regexp.MustCompile(`(?m)^# ([a-z][a-z0-9-]* = .*)$`)
	uncommented := key.ReplaceAllString(text, "$1")
	if _, err := decodeConfigFile("example", []byte(uncommented), runCommand().Flags); err != nil {
		t.Fatalf("example with every key uncommented: %v\n%s", err, uncommented)
	}
	for name, f := range configKeys(runCommand().Flags) {
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(name) + ` = `).MatchString(text) {
			t.Errorf("example has no key %s", name)
		}
		usage, _ := flagUsage(f)
		if first := strings.Fields(usage)[0]; !strings.Contains(text, "# "+first) {
			t.Errorf("example lacks the usage of %s", name)
		}
	}
	for _, want := range []string{
		"\ncommand = [\"./server\"]\n",
		"\nlisten = [\":8080\"]\n",
		"(default: the CPU quota of its cgroup, else the\n# number of CPUs)\n# workers = 4\n",
		"# ready-timeout = \"1m\"\n",
		"# env = [\"K=V\"]\n",
		"(default: --ready-timeout + --quiet-timeout)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("example lacks %q:\n%s", want, text)
		}
	}
	for i, line := range strings.Split(text, "\n") {
		if len(line) > 80 && !key.MatchString(line) {
			t.Errorf("line %d is %d long: %q", i+1, len(line), line)
		}
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), "app.toml")
	if err := os.WriteFile(name, []byte("workers = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := writeConfigFile(name, exampleConfig(), false)
	wantUsageError(t, err, name, "exists", "--force")
	if data, _ := os.ReadFile(name); string(data) != "workers = 1\n" {
		t.Errorf("file changed to %q", data)
	}
	if ents, _ := os.ReadDir(filepath.Dir(name)); len(ents) != 1 {
		t.Errorf("directory holds %v, want only app.toml", ents)
	}

	if err := writeConfigFile(name, exampleConfig(), true); err != nil {
		t.Fatalf("with --force: %v", err)
	}
	if data, _ := os.ReadFile(name); string(data) != string(exampleConfig()) {
		t.Errorf("with --force the file is not the example: %q", data)
	}
	if ents, _ := os.ReadDir(filepath.Dir(name)); len(ents) != 1 {
		t.Errorf("directory holds %v, want only app.toml", ents)
	}
}

// The command line of init: FILE, --force, exit codes. Not parallel: run
// sets up cli's shared help flag.
func TestInitCommand(t *testing.T) {
	name := filepath.Join(t.TempDir(), "x.toml")
	if code := Main([]string{"hotcluster", "init", name}); code != 0 {
		t.Fatalf("init %s: exit code %d", name, code)
	}
	if code := Main([]string{"hotcluster", "init", name}); code != 2 {
		t.Errorf("init over an existing file: exit code %d, want 2", code)
	}
	if code := Main([]string{"hotcluster", "init", "--force", name}); code != 0 {
		t.Errorf("init --force: exit code %d, want 0", code)
	}
	if code := Main([]string{"hotcluster", "init", name, "other"}); code != 2 {
		t.Errorf("init with two files: exit code %d, want 2", code)
	}
	if _, err := decodeConfigFile(name, mustRead(t, name), runCommand().Flags); err != nil {
		t.Errorf("written file: %v", err)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
