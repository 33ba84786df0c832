package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/internal/testroles"
)

// asHotcluster makes a directory with "hotcluster", this test binary
// playing the command, as a shell finds it on $PATH, and returns the
// environment that has it first.
func asHotcluster(t *testing.T) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, "hotcluster")); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), roleEnv+"=master", "XDG_RUNTIME_DIR="+t.TempDir())
}

// shellOut runs a script in a shell with asHotcluster's environment.
func shellOut(t *testing.T, env []string, shell string, args ...string) string {
	t.Helper()
	cmd := exec.Command(shell, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", shell, args, err, out)
	}
	return string(out)
}

// The bash script completes commands and each command's flags by asking
// the binary, which runs nothing: completing `stop --` or `scale -1 `
// stops or scales no instance (there is none: it would fail, and say so).
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	env := asHotcluster(t)
	script := `source <(hotcluster completion bash) || exit 1
complete -p hotcluster || exit 1
for line in "$@"; do
	read -ra COMP_WORDS <<<"$line"
	[[ $line == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_hotcluster_complete
	echo "$line|${COMPREPLY[*]}"
done`
	worker := filepath.Join(t.TempDir(), "my-server")
	if err := os.WriteFile(worker, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimSuffix(worker, "server")
	out := shellOut(t, env, testroles.Tool(t, "bash"), "-c", script, "bash",
		"hotcluster sta", "hotcluster re", "hotcluster run --watchd", "hotcluster stop --", "hotcluster scale -1 ",
		"hotcluster completion ", "hotcluster help sta", "hotcluster status ", "hotcluster run -- "+prefix)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, "|"); ok {
			got[k] = v
		}
	}
	for line, want := range map[string]string{
		"hotcluster sta":              "status",
		"hotcluster re":               "reload",
		"hotcluster run --watchd":     "--watchdog",
		"hotcluster stop --":          "--name --control --json --force --help",
		"hotcluster scale -1 ":        "",
		"hotcluster completion ":      "bash zsh fish",
		"hotcluster help sta":         "status",
		"hotcluster status ":          "",
		"hotcluster run -- " + prefix: worker,
	} {
		if got[line] != want {
			t.Errorf("completing %q: %q, want %q\n%s", line, got[line], want, out)
		}
	}
	if strings.Contains(out, "no hotcluster instance") || strings.Contains(out, "hotcluster:") {
		t.Errorf("completion ran a command:\n%s", out)
	}
}

// fish completes from the list the script holds.
func TestFishCompletion(t *testing.T) {
	t.Parallel()
	env := asHotcluster(t)
	out := shellOut(t, env, testroles.Tool(t, "fish"), "-c",
		`hotcluster completion fish | source; complete -C "hotcluster sta"; complete -C "hotcluster run --wor"; complete -C "hotcluster stop --f"`)
	for _, want := range []string{"status\tshow the master", "--workers\tN workers per generation", "--force\tkill the workers at once"} {
		if !strings.Contains(out, want) {
			t.Errorf("fish completes no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "`") {
		t.Errorf("backquotes of the usage texts in fish's descriptions:\n%s", out)
	}
}

// zsh takes the script (there is no completing zsh without a terminal),
// and the script asks the binary as bash's does.
func TestZshCompletion(t *testing.T) {
	t.Parallel()
	env := asHotcluster(t)
	zsh := testroles.Tool(t, "zsh")
	file := filepath.Join(t.TempDir(), "_hotcluster")
	script := shellOut(t, env, zsh, "-c", "hotcluster completion zsh")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	shellOut(t, env, zsh, "-n", file)
	out := shellOut(t, env, zsh, "-c", `autoload -Uz compinit && compinit -u -D && source "$1" && print -r -- "${_comps[hotcluster]}"`, "zsh", file)
	if strings.TrimSpace(out) != "_hotcluster" || !strings.Contains(script, "--generate-bash-completion") {
		t.Errorf("zsh: hotcluster completed by %q, want _hotcluster", out)
	}
}

// The manual names every command and flag, renders without a warning, and
// is the same whatever the machine: run's --workers defaults to the number
// of CPUs, which the page must not print.
func TestManPage(t *testing.T) {
	t.Parallel()
	code, page, stderr := hotclusterOut(t, nil, "man")
	if code != 0 || !strings.HasPrefix(page, ".nh\n.TH HOTCLUSTER 1 ") {
		t.Fatalf("man: exit %d, %s\n%.300s", code, stderr, page)
	}
	for _, cmd := range commandsOf(t) {
		if !strings.Contains(page, "\n.SS "+cmd+" ") && !strings.Contains(page, "\n.SS "+cmd+"\n") {
			t.Errorf("no section for %s", cmd)
		}
	}
	for _, flag := range []string{"--listen [NAME=]ADDR", "--drain-timeout D", "--max-restarts N", "--socket", "--force"} {
		if !strings.Contains(page, flag) {
			t.Errorf("no %s in the page", flag)
		}
	}
	taskset := testroles.Tool(t, "taskset")
	self, _ := os.Executable()
	one := exec.Command(taskset, "-c", "0", self, "man")
	one.Env = append(os.Environ(), roleEnv+"=master")
	onOneCPU, err := one.Output()
	if err != nil {
		t.Fatalf("man on one CPU: %v", err)
	}
	if string(onOneCPU) != page {
		t.Errorf("the page differs on one CPU")
	}
	file := filepath.Join(t.TempDir(), "hotcluster.1")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	render := exec.Command(testroles.Tool(t, "man"), "--warnings", "-l", file)
	render.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
	out, err := render.CombinedOutput()
	if err != nil || strings.Contains(string(out), "warning") || !strings.Contains(string(out), "EXIT STATUS") || !strings.Contains(string(out), "--drain-timeout D") {
		t.Errorf("man -l: %v\n%s", err, out)
	}
}
