package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hotcluster/hotcluster/internal/testroles"
)

// hotclusterOut is hotcluster with stdout and stderr apart.
func hotclusterOut(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Args = append([]string{"hotcluster"}, args...)
	cmd.Env = append(append(os.Environ(), roleEnv+"=master", "XDG_RUNTIME_DIR="+t.TempDir()), env...)
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

// commandsOf lists the commands `hotcluster help` shows.
func commandsOf(t *testing.T) []string {
	t.Helper()
	code, out, _ := hotclusterOut(t, nil, "help")
	if code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	_, list, _ := strings.Cut(out, "COMMANDS:\n")
	list, _, _ = strings.Cut(list, "GLOBAL OPTIONS:")
	var cmds []string
	for _, m := range regexp.MustCompile(`(?m)^   ([a-z]+)  `).FindAllStringSubmatch(list, -1) {
		cmds = append(cmds, m[1])
	}
	if len(cmds) < 10 {
		t.Fatalf("help lists %q, want every command:\n%s", cmds, out)
	}
	return cmds
}

func TestHelpCommand(t *testing.T) {
	t.Parallel()
	for _, cmd := range commandsOf(t) {
		code, viaHelp, _ := hotclusterOut(t, nil, "help", cmd)
		if code != 0 || !strings.HasPrefix(viaHelp, "NAME:\n   hotcluster "+cmd+" - ") {
			t.Errorf("help %s: exit %d, output:\n%s", cmd, code, viaHelp)
		}
		if cmd == "help" {
			continue
		}
		if _, viaFlag, _ := hotclusterOut(t, nil, cmd, "--help"); viaFlag != viaHelp {
			t.Errorf("help %s and %s --help differ:\n%s\n---\n%s", cmd, cmd, viaHelp, viaFlag)
		}
	}
	code, out, stderr := hotclusterOut(t, nil, "help", "stauts")
	if want := `hotcluster: unknown command "stauts" (did you mean status?); hotcluster help lists the commands`; code != 2 || out != "" || strings.TrimSpace(stderr) != want {
		t.Errorf("help stauts: exit %d, stdout %q, stderr %q; want 2 and %q", code, out, stderr, want)
	}
}

// Every mistake in a command line exits 2 with a message that names it and
// says what to do; none is the flag package's or urfave/cli's wording.
func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, `unknown command "stauts" (did you mean status?); hotcluster help lists the commands`},
		{[]string{"relaod"}, `unknown command "relaod" (did you mean reload?)`},
		{[]string{"xyzzy"}, `unknown command "xyzzy"; hotcluster help lists the commands`},
		{[]string{"--bogus"}, `unknown flag --bogus; see hotcluster help`},
		{[]string{"run", "--wokers", "2", "--", self}, `run: unknown flag --wokers (did you mean --workers?); see hotcluster help run`},
		{[]string{"run", "--workers", "two", "--", self}, `run: --workers "two": want a whole number; see hotcluster help run`},
		{[]string{"run", "--ready-timeout", "soon", "--", self}, `run: --ready-timeout "soon": want a duration such as 500ms, 30s or 2m`},
		{[]string{"run", "--nodelay=maybe", "--", self}, `run: --nodelay "maybe": want true or false`},
		{[]string{"run", "--drain-timeout"}, `run: --drain-timeout needs a value; see hotcluster help run`},
		{[]string{"status", "--jsno"}, `status: unknown flag --jsno (did you mean --json?); see hotcluster help status`},
		{[]string{"unit", "--", "--", self}, `unit: --name is required: the units' base name, e.g. --name myapp for myapp.service`},
		{[]string{"completion"}, `completion: want one shell: bash, zsh or fish`},
		{[]string{"completion", "tcsh"}, `completion: unknown shell "tcsh": want bash, zsh or fish`},
		{[]string{"man", "extra"}, `man takes no arguments`},
		{[]string{"help", "run", "unit"}, `help: want one COMMAND at most`},
		{[]string{"send", "--worker", "x", "1"}, `send: --worker "x": want a whole number`},
	} {
		code, stdout, stderr := hotclusterOut(t, nil, tc.args...)
		if code != 2 || !strings.HasPrefix(stderr, "hotcluster: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("hotcluster %q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
		if strings.Contains(stderr+stdout, "flag provided but not defined") || strings.Contains(stderr, "Incorrect Usage") || strings.Contains(stderr, "Required flag") {
			t.Errorf("hotcluster %q: the library's wording:\n%s%s", tc.args, stdout, stderr)
		}
	}
	// hotcluster alone: the commands, exit 2.
	if code, stdout, _ := hotclusterOut(t, nil); code != 2 || !strings.Contains(stdout, "COMMANDS:") {
		t.Errorf("hotcluster alone: exit %d, stdout:\n%s", code, stdout)
	}
}

// widest is the width of the widest line of s, in characters.
func widest(s string) (int, string) {
	n, line := 0, ""
	for _, l := range strings.Split(s, "\n") {
		if w := utf8.RuneCountInString(l); w > n {
			n, line = w, l
		}
	}
	return n, line
}

// Help that goes to a pipe fits in 80 columns; run's has examples; send's
// shows no internal sentinel.
func TestHelpFitsEightyColumns(t *testing.T) {
	t.Parallel()
	for _, cmd := range append(commandsOf(t), "") {
		args := []string{"help"}
		if cmd != "" {
			args = append(args, cmd)
		}
		_, out, _ := hotclusterOut(t, nil, args...)
		if n, line := widest(out); n > 80 {
			t.Errorf("hotcluster %s: a line of %d columns:\n%s", strings.Join(args, " "), n, line)
		}
	}
	_, run, _ := hotclusterOut(t, nil, "run", "--help")
	_, examples, ok := strings.Cut(run, "\nEXAMPLES:\n")
	if !ok || !strings.Contains(examples, "hotcluster run --listen web=127.0.0.1:8080 --workers 2 -- ./server") || !strings.Contains(examples, "--build \\\n       'go build -o {out} ./cmd/server' -- {out} --dev") {
		t.Errorf("run --help: no EXAMPLES, or not the expected ones:\n%s", run)
	}
	_, send, _ := hotclusterOut(t, nil, "send", "--help")
	if strings.Contains(send, "-1") || !strings.Contains(send, "--worker SLOT") {
		t.Errorf("send --help shows the sentinel, or no --worker SLOT:\n%s", send)
	}
	_, logs, _ := hotclusterOut(t, nil, "logs", "--help")
	if strings.Contains(logs, "default: -1") || strings.Contains(logs, "default: 0)") || !strings.Contains(logs, "-n, --lines N") {
		t.Errorf("logs --help shows a sentinel of --worker or --generation, or no --lines N:\n%s", logs)
	}
}

// onTerminal runs hotcluster args with its standard output on a
// pseudo-terminal of cols columns, and returns what it printed.
func onTerminal(t *testing.T, cols int, args ...string) string {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Args = append([]string{"hotcluster"}, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=master", "XDG_RUNTIME_DIR="+t.TempDir())
	return testroles.OnTerminal(t, cols, cmd)
}

// On a terminal, help fits the terminal's width, however narrow or wide.
func TestHelpFitsTheTerminal(t *testing.T) {
	t.Parallel()
	narrow := onTerminal(t, 60, "run", "--help")
	if n, line := widest(narrow); n > 60 || !strings.Contains(narrow, "EXAMPLES:") {
		t.Errorf("run --help on 60 columns: a line of %d:\n%s", n, line)
	}
	wide := onTerminal(t, 200, "run", "--help")
	if n, _ := widest(wide); n <= 80 || n > 200 {
		t.Errorf("run --help on 200 columns: widest line %d, want more than 80, at most 200:\n%s", n, wide)
	}
}
