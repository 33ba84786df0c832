package unitfile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// trickyArgs are run arguments that systemd would mangle without quoting.
var trickyArgs = []string{
	"--listen", "web=127.0.0.1:8080", "--workers", "2", "--",
	"/srv/my app/server", "", "a b", `say "hi"`, `C:\dir`, `\`, "$HOME", "${HOME}",
	"$", "$$", "100%", "%n %h", ";", `\;`, "a;b", "it's", "tab\there", "two\nlines",
	"bell\x07", "\xff", "héllo", "#x", "-", "{out}", "*", "--flag=a b",
}

// unitSet is a set of units rendered into one directory.
type unitSet struct {
	dir   string
	exec  string
	files map[string]string // unit name -> content
}

// renderUnits renders the units the systemd tests check: a service with
// every optional field and tricky arguments, and its two socket units, into
// a directory that anyone may read (systemd --test refuses to run as root).
// Exec is a symlink to the test binary whose path needs quoting and %%.
func renderUnits(t *testing.T) unitSet {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(dir, "bin 100% ;&*é")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	execPath := filepath.Join(binDir, "hot cluster")
	if err := os.Symlink(self, execPath); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Name:             "hctest",
		Exec:             execPath,
		RunArgs:          trickyArgs,
		WorkingDirectory: "/srv/app 100%",
		User:             "hctest-user",
		Group:            "hctest-group",
		Environment:      []string{"GREETING=hello world", `QUOTE=say "hi" \o/`, "COST=$5 or 5%", "EMPTY="},
		SocketUnits:      []string{"hctest-web.socket", "hctest-dns.socket"},
	}
	service, err := Service(o)
	if err != nil {
		t.Fatal(err)
	}
	o.ServiceUnit = "hctest.service"
	o.Name = "hctest-web"
	o.Listen = []Listen{
		{Name: "web", Network: "tcp", Addr: ":18080"},
		{Name: "web", Network: "tcp", Addr: "192.0.2.7:18443"},
		{Name: "web", Network: "tcp", Addr: "[fe80::1%lo]:18080"},
		{Name: "web", Network: "unix", Addr: "/run/hctest 100%.sock"},
		{Name: "web", Network: "unix", Addr: "@hctest"},
	}
	web, err := Socket(o)
	if err != nil {
		t.Fatal(err)
	}
	o.Name = "hctest-dns"
	o.Listen = []Listen{
		{Name: "dns", Network: "udp6", Addr: ":15353"},
		{Name: "dns", Network: "tcp6", Addr: "[::1]:15353"},
	}
	dns, err := Socket(o)
	if err != nil {
		t.Fatal(err)
	}
	us := unitSet{dir: dir, exec: execPath, files: map[string]string{
		"hctest.service":    service,
		"hctest-web.socket": web,
		"hctest-dns.socket": dns,
	}}
	for name, content := range us.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return us
}

// TestSystemdAnalyzeVerify checks that systemd accepts the units without a
// warning about them.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed, so the units cannot be verified")
	}
	us := renderUnits(t)

	// The plain example too, with its own directory and names.
	plain := t.TempDir()
	o := Options{
		Name: "hcplain", Exec: "/bin/true", WithSocket: true,
		RunArgs: []string{"--listen", "web=:8080", "--workers", "4", "--", "/srv/app/server", "--flag"},
		Listen:  []Listen{{Name: "web", Network: "tcp", Addr: ":8080"}},
	}
	service, err := Service(o)
	if err != nil {
		t.Fatal(err)
	}
	socket, err := Socket(o)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"hcplain.service": service, "hcplain.socket": socket} {
		if err := os.WriteFile(filepath.Join(plain, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, files := range [][]string{
		{filepath.Join(us.dir, "hctest.service"), filepath.Join(us.dir, "hctest-web.socket"), filepath.Join(us.dir, "hctest-dns.socket")},
		{filepath.Join(plain, "hcplain.service"), filepath.Join(plain, "hcplain.socket")},
	} {
		cmd := exec.Command(tool, append([]string{"verify", "--man=no"}, files...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", cmd, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "hctest") || strings.Contains(line, "hcplain") || strings.Contains(line, us.dir) || strings.Contains(line, plain) {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
	}
}

// systemdBinary returns the path of systemd itself, or "".
func systemdBinary() string {
	for _, p := range []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// TestSystemdReadsBack loads the units into systemd's test mode, which
// parses them exactly as PID 1 does and dumps what it understood, and
// checks that it understood the command line, environment and sockets
// that were asked for.
func TestSystemdReadsBack(t *testing.T) {
	t.Parallel()
	bin := systemdBinary()
	if bin == "" {
		t.Skip("systemd is not installed, so it cannot read the units back")
	}
	us := renderUnits(t)
	cmd := exec.Command(bin, "--test", "--system", "--no-pager", "--unit=hctest.service")
	// Trailing ':' keeps the default search path, for sysinit.target and
	// the other units that the default dependencies name.
	cmd.Env = []string{"SYSTEMD_UNIT_PATH=" + us.dir + ":", "HOME=/", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if os.Geteuid() == 0 {
		// "Don't run test mode as root."
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.Bytes())
	}
	dump := dumpUnits(string(out))

	svc := dump["hctest.service"]
	if svc == nil {
		t.Fatalf("systemd --test did not dump hctest.service:\n%s\n%s", out, stderr.Bytes())
	}
	line := svc["-> ExecStart:"]
	if len(line) != 1 {
		t.Fatalf("ExecStart: %q", line)
	}
	argv, err := splitDumped(line[0])
	if err != nil {
		t.Fatal(err)
	}
	// systemd keeps "$$" until it starts the command, then makes it "$".
	for i := range argv {
		argv[i] = strings.ReplaceAll(argv[i], "$$", "$")
	}
	want := append([]string{us.exec, "run"}, trickyArgs...)
	if strings.Join(argv, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("systemd reads ExecStart as\n%q\nwant\n%q", argv, want)
	}
	for key, want := range map[string][]string{
		"Type":             {"notify"},
		"NotifyAccess":     {"main"},
		"KillMode":         {"mixed"},
		"KillSignal":       {"SIGTERM"},
		"TimeoutStopSec":   {"45s"},
		"TimeoutStartSec":  {"1min 30s"},
		"NonBlocking":      {"yes"},
		"WorkingDirectory": {"/srv/app 100%"},
		"User":             {"hctest-user"},
		"Group":            {"hctest-group"},
		"Environment":      {"GREETING=hello world", `QUOTE=say "hi" \o/`, "COST=$5 or 5%", "EMPTY="},
	} {
		if got := svc[key]; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("hctest.service %s: systemd reads %q, want %q", key, got, want)
		}
	}
	for _, want := range []string{"hctest-web.socket", "hctest-dns.socket"} {
		if !contains(svc["Requires"], want+" (origin-file)") || !contains(svc["TriggeredBy"], want+" (origin-file destination-implicit)") {
			t.Errorf("hctest.service does not require and get triggered by %s: Requires %q, TriggeredBy %q", want, svc["Requires"], svc["TriggeredBy"])
		}
	}

	for unit, want := range map[string]map[string][]string{
		"hctest-web.socket": {
			"ListenStream":       {"[::]:18080", "192.0.2.7:18443", "[fe80::1]:18080%lo", "/run/hctest 100%.sock", "@hctest"},
			"FileDescriptorName": {"web"},
			"BindIPv6Only":       {"both"},
			"FreeBind":           {"yes"},
			"ReusePort":          {"yes"},
			"NoDelay":            {"yes"},
			"Triggers":           {"hctest.service (origin-implicit destination-file)"},
		},
		"hctest-dns.socket": {
			"ListenDatagram":     {"[::]:15353"},
			"ListenStream":       {"[::1]:15353"},
			"FileDescriptorName": {"dns"},
			"BindIPv6Only":       {"ipv6-only"},
			"FreeBind":           {"no"},
			"ReusePort":          {"yes"},
		},
	} {
		got := dump[unit]
		if got == nil {
			t.Errorf("systemd --test did not dump %s", unit)
			continue
		}
		for key, w := range want {
			if strings.Join(got[key], "\n") != strings.Join(w, "\n") {
				t.Errorf("%s %s: systemd reads %q, want %q", unit, key, got[key], w)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dumpUnits parses the dump of `systemd --test`: for each unit ("\t-> Unit
// NAME:"), its "\t\tKey: value" lines by key. A "\t\t-> ExecStart:" block
// maps to the command lines under it ("\t\t\tCommand Line: …").
func dumpUnits(dump string) map[string]map[string][]string {
	units := make(map[string]map[string][]string)
	var cur map[string][]string
	var block string
	for _, line := range strings.Split(dump, "\n") {
		if name, ok := strings.CutPrefix(line, "\t-> Unit "); ok {
			cur = make(map[string][]string)
			units[strings.TrimSuffix(name, ":")] = cur
			block = ""
			continue
		}
		if cur == nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "\t\t-> "):
			block = strings.TrimPrefix(line, "\t\t")
		case strings.HasPrefix(line, "\t\t\tCommand Line: ") && block != "":
			cur[block] = append(cur[block], strings.TrimPrefix(line, "\t\t\tCommand Line: "))
		case strings.HasPrefix(line, "\t\t") && !strings.HasPrefix(line, "\t\t\t"):
			block = ""
			if k, v, ok := strings.Cut(strings.TrimPrefix(line, "\t\t"), ": "); ok {
				cur[k] = append(cur[k], v)
			}
		}
	}
	return units
}

// splitDumped splits a "Command Line:" of systemd's dump, which quotes
// words shell-style: double quotes, and backslash escapes that are C
// escapes (octal for other bytes) or a quoted character.
func splitDumped(s string) ([]string, error) {
	var words []string
	var w []byte
	inWord, inQuote := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote, inWord = !inQuote, true
		case c == ' ' && !inQuote:
			if inWord {
				words = append(words, string(w))
				w, inWord = nil, false
			}
		case c == '\\' && i+1 < len(s):
			inWord = true
			i++
			switch e := s[i]; e {
			case 'a':
				w = append(w, '\a')
			case 'b':
				w = append(w, '\b')
			case 'f':
				w = append(w, '\f')
			case 'n':
				w = append(w, '\n')
			case 'r':
				w = append(w, '\r')
			case 't':
				w = append(w, '\t')
			case 'v':
				w = append(w, '\v')
			case 'x':
				n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
				if err != nil {
					return nil, err
				}
				w = append(w, byte(n))
				i += 2
			case '0', '1', '2', '3':
				n, err := strconv.ParseUint(s[i:i+3], 8, 8)
				if err != nil {
					return nil, err
				}
				w = append(w, byte(n))
				i += 2
			default:
				w = append(w, e)
			}
		default:
			inWord = true
			w = append(w, c)
		}
	}
	if inWord {
		words = append(words, string(w))
	}
	return words, nil
}
