package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child"
	"github.com/hotcluster/hotcluster/internal/logs"
	"github.com/hotcluster/hotcluster/internal/testroles"
	"github.com/hotcluster/hotcluster/workers"
)

func init() {
	roles.Register("log-printer", roleLogPrinter)
}

// roleLogPrinter prints, once it serves, a line on each stream, a JSON
// object, a line with a syslog priority prefix and a line with a quote
// and a tab; then it prints a line for every request it answers.
func roleLogPrinter() int {
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gen, slot := child.Generation(), child.WorkerID()
	fmt.Printf("out: hello from g%d w%d\n", gen, slot)
	fmt.Fprintf(os.Stderr, "err: trouble in g%d w%d\n", gen, slot)
	fmt.Printf(`{"event":"boot","gen":%d,"worker":%d,"nested":{"ok":true}}`+"\n", gen, slot)
	fmt.Println("<4>a warning in the sd-daemon style")
	fmt.Println("quote \" and\ttab")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("served %s by g%d w%d pid=%d\n", r.URL.Path, gen, slot, os.Getpid())
		hello(w, r)
	})}
	if err := child.ServeHTTP(context.Background(), srv, ln, child.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// collector gathers the lines of one pipe, for waitLine.
type collector struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
	cond  chan struct{}
	eof   chan struct{}
}

func collect(t *testing.T, f *os.File) *collector {
	c := &collector{t: t, cond: make(chan struct{}), eof: make(chan struct{})}
	go func() {
		defer close(c.eof)
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			close(c.cond)
			c.cond = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// waitLine waits for a line matching re and returns its submatches.
func (c *collector) waitLine(re string) []string {
	c.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for from := 0; ; {
		c.mu.Lock()
		for ; from < len(c.lines); from++ {
			if sm := rx.FindStringSubmatch(c.lines[from]); sm != nil {
				c.mu.Unlock()
				return sm
			}
		}
		cond := c.cond
		c.mu.Unlock()
		select {
		case <-cond:
		case <-c.eof:
			if sm := matchAny(rx, c.all()); sm != nil {
				return sm
			}
			c.t.Fatalf("output ended before a line matching %q:\n%s", re, strings.Join(c.all(), "\n"))
		case <-deadline.C:
			c.t.Fatalf("no line matching %q within %s:\n%s", re, testTimeout, strings.Join(c.all(), "\n"))
		}
	}
}

func matchAny(rx *regexp.Regexp, lines []string) []string {
	for _, l := range lines {
		if sm := rx.FindStringSubmatch(l); sm != nil {
			return sm
		}
	}
	return nil
}

// splitMaster is a master whose stdout and stderr are two pipes, as
// `hotcluster run … > out.log` leaves them, read apart.
type splitMaster struct {
	cmd         *exec.Cmd
	stdout      *collector
	stderr      *collector
	env         []string // for its clients
	done        chan struct{}
	err         error
	stderrWrite *os.File // kept open until start, for JOURNAL_STREAM
}

// startSplit runs `hotcluster run ARGS -- self` (role) with two pipes for
// its outputs, through wrap (a command that execs the rest, or nil), with
// env added; env may name {stderr}, which is replaced by the stderr
// pipe's dev:ino (as JOURNAL_STREAM wants it).
func startSplit(t *testing.T, wrap []string, env []string, role string, args ...string) *splitMaster {
	t.Helper()
	self, _ := os.Executable()
	ctlDir := t.TempDir()
	m := &splitMaster{env: []string{"XDG_RUNTIME_DIR=" + ctlDir}, done: make(chan struct{})}
	full := append([]string{self, "run", "--env", roleEnv + "=" + role}, args...)
	full = append(append(full, "--"), self)
	argv := append(append([]string(nil), wrap...), full...)
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(wrap) == 0 {
		cmd.Args[0] = "hotcluster"
	}
	ro, wo, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	re, we, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(we.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	for i, kv := range env {
		env[i] = strings.ReplaceAll(kv, "{stderr}", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	}
	cmd.Env = append(append(append(os.Environ(), masterEnv(t)...), m.env...), env...)
	noteRoles(cmd.Args, cmd.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = wo, we
	err = cmd.Start()
	wo.Close()
	we.Close()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = cmd
	m.stdout, m.stderr = collect(t, ro), collect(t, re)
	go func() { m.err = cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		select {
		case <-m.done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-m.done:
			case <-time.After(testTimeout / 2):
				t.Errorf("master still running %s after SIGTERM; killing it", testTimeout/2)
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-m.done
			}
		}
		<-m.stdout.eof
		<-m.stderr.eof
		if t.Failed() {
			t.Logf("master stdout:\n%s\nmaster stderr:\n%s", strings.Join(m.stdout.all(), "\n"), strings.Join(m.stderr.all(), "\n"))
		}
	})
	return m
}

// rfc3339ms is the start of a text line with --log-time.
const rfc3339ms = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) `

// `hotcluster run … > out.log`: the workers' stdout goes to the master's
// stdout and their stderr, marked, to its stderr with hotcluster's own
// lines, each line whole with its time first; a worker's line is never on
// the other stream.
func TestWorkerStreamsAndTimes(t *testing.T) {
	t.Parallel()
	m := startSplit(t, nil, nil, "log-printer", "--workers", "2", "--listen", "web=127.0.0.1:0", "--log-time")
	addr := m.stderr.waitLine(`^` + rfc3339ms + `hotcluster: listening on (\S+) as web `)[2]
	m.stderr.waitLine(`^` + rfc3339ms + `hotcluster: serving \(master pid`)
	for slot := 0; slot < 2; slot++ {
		m.stdout.waitLine(fmt.Sprintf(`^%s\[g1 w%d\] out: hello from g1 w%d$`, rfc3339ms, slot, slot))
		m.stderr.waitLine(fmt.Sprintf(`^%s\[g1 w%d err\] err: trouble in g1 w%d$`, rfc3339ms, slot, slot))
	}
	// Text keeps the line as printed, "<4>" included.
	m.stdout.waitLine(`^` + rfc3339ms + `\[g1 w\d\] <4>a warning in the sd-daemon style$`)
	body, err := get("tcp", addr, "/x")
	if err != nil {
		t.Fatal(err)
	}
	sm := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(body)
	line := m.stdout.waitLine(`^(` + rfc3339ms + `)\[g1 w\d\] served /x by g1 w\d pid=` + sm[1] + `$`)
	stamp, err := time.Parse(logs.TextTime, strings.TrimSpace(line[1]))
	if err != nil || time.Since(stamp) > time.Minute || time.Since(stamp) < -time.Second {
		t.Errorf("line time %q (%v): want about now", line[1], err)
	}
	for _, l := range m.stdout.all() {
		if strings.Contains(l, "hotcluster:") || strings.Contains(l, " err]") {
			t.Errorf("on stdout: %q, which belongs on stderr", l)
		}
	}
	for _, l := range m.stderr.all() {
		if strings.Contains(l, "out: hello") || strings.Contains(l, "served /") {
			t.Errorf("on stderr: %q, a worker's stdout line", l)
		}
	}
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGTERM)
	<-m.done
	if m.err != nil {
		t.Errorf("master: %v", m.err)
	}
}

// jsonLine is a line of --log-format json.
type jsonLine struct {
	Time   time.Time       `json:"time"`
	Level  string          `json:"level"`
	Msg    *string         `json:"msg"`
	JSON   json.RawMessage `json:"json"`
	Gen    uint64          `json:"gen"`
	Slot   *int            `json:"slot"`
	PID    int             `json:"pid"`
	Stream string          `json:"stream"`
	Cut    bool            `json:"cut"`
}

// --log-format json: every line on both streams is one JSON object, the
// workers' with gen, slot, pid and stream; a worker's line that is a JSON
// object stays an object (not a string), and a "<4>" prefix is the level.
func TestJSONLogKeepsWorkerLines(t *testing.T) {
	t.Parallel()
	m := startSplit(t, nil, nil, "log-printer", "--workers", "1", "--listen", "web=127.0.0.1:0", "--log-format", "json")
	m.stderr.waitLine(`"msg":"serving \(master pid`)
	m.stdout.waitLine(`"msg":"quote`)
	m.stderr.waitLine(`err: trouble`)
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGTERM)
	<-m.done
	pid := 0
	var boot, warn, quote, trouble, master bool
	for _, stream := range []*collector{m.stdout, m.stderr} {
		for _, l := range stream.all() {
			var v jsonLine
			d := json.NewDecoder(strings.NewReader(l))
			if err := d.Decode(&v); err != nil || d.More() || v.Time.IsZero() || v.Level == "" || (v.Msg == nil) == (v.JSON == nil) {
				t.Errorf("not a log line of one JSON object: %q (%v)", l, err)
				continue
			}
			if v.Stream == "" {
				master = true
				continue
			}
			if v.Gen != 1 || v.Slot == nil || *v.Slot != 0 || v.PID == 0 || pid != 0 && v.PID != pid {
				t.Errorf("worker line without its gen, slot and pid: %q", l)
			}
			pid = v.PID
			if (stream == m.stdout) != (v.Stream == "stdout") {
				t.Errorf("a %s line on the other stream: %q", v.Stream, l)
			}
			switch {
			case v.JSON != nil:
				var obj struct {
					Event  string            `json:"event"`
					Nested struct{ OK bool } `json:"nested"`
				}
				if err := json.Unmarshal(v.JSON, &obj); err != nil || obj.Event != "boot" || !obj.Nested.OK || v.Level != "info" {
					t.Errorf("the JSON line: %s (%v)", v.JSON, err)
				}
				boot = true
			case *v.Msg == "a warning in the sd-daemon style":
				warn = v.Level == "warn"
			case *v.Msg == "quote \" and\ttab":
				quote = v.Level == "info"
			case *v.Msg == "err: trouble in g1 w0":
				trouble = v.Level == "error" && v.Stream == "stderr"
			}
		}
	}
	if !boot || !warn || !quote || !trouble || !master {
		t.Errorf("json object %v, <4> as warn %v, quote and tab %v, stderr as error %v, master lines %v: want all",
			boot, warn, quote, trouble, master)
	}
}

// The cut marker of text lines says the length the pool cuts at.
func TestCutMarkerNamesMaxLine(t *testing.T) {
	if want := fmt.Sprintf("%d KiB", workers.MaxLine>>10); !strings.Contains(logs.CutMarker, want) {
		t.Errorf("logs.CutMarker %q does not say %s (workers.MaxLine)", logs.CutMarker, want)
	}
}

// fakeJournal is a datagram socket that speaks journald's native protocol
// (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/), in a directory of its
// own that a mount namespace puts at /run/systemd/journal.
type fakeJournal struct {
	t       *testing.T
	dir     string
	mu      sync.Mutex
	entries []map[string]string
	cond    chan struct{}
}

func startFakeJournal(t *testing.T) *fakeJournal {
	t.Helper()
	j := &fakeJournal{t: t, dir: t.TempDir(), cond: make(chan struct{})}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(j.dir, "socket"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(8 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<20)
		oob := make([]byte, 1024)
		for {
			n, _, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			e, err := parseJournalEntry(buf[:n])
			if err != nil {
				t.Errorf("journal entry %q: %v", buf[:n], err)
				continue
			}
			j.mu.Lock()
			j.entries = append(j.entries, e)
			close(j.cond)
			j.cond = make(chan struct{})
			j.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return j
}

// parseJournalEntry reads KEY=VALUE lines and binary fields (KEY, a
// newline, a 64-bit little-endian length, the value, a newline).
func parseJournalEntry(b []byte) (map[string]string, error) {
	e := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, fmt.Errorf("no newline")
		}
		line := b[:i]
		b = b[i+1:]
		if k, v, ok := bytes.Cut(line, []byte{'='}); ok {
			e[string(k)] = string(v)
			continue
		}
		if len(b) < 8 {
			return nil, fmt.Errorf("binary field %q without its length", line)
		}
		n := binary.LittleEndian.Uint64(b)
		if uint64(len(b)) < 8+n+1 {
			return nil, fmt.Errorf("binary field %q of %d bytes: short", line, n)
		}
		e[string(line)] = string(b[8 : 8+n])
		b = b[8+n+1:]
	}
	return e, nil
}

// wait returns the first entry match accepts.
func (j *fakeJournal) wait(what string, match func(map[string]string) bool) map[string]string {
	j.t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for from := 0; ; {
		j.mu.Lock()
		for ; from < len(j.entries); from++ {
			if match(j.entries[from]) {
				e := j.entries[from]
				j.mu.Unlock()
				return e
			}
		}
		cond := j.cond
		j.mu.Unlock()
		select {
		case <-cond:
		case <-deadline.C:
			j.mu.Lock()
			defer j.mu.Unlock()
			j.t.Fatalf("no journal entry %s within %s; got %d: %v", what, testTimeout, len(j.entries), j.entries)
		}
	}
}

// inJournalNamespace is a wrapper that runs a command in a mount namespace
// of its own where /run is empty but for dir at /run/systemd/journal (dir
// "" leaves none there).
func inJournalNamespace(t *testing.T, dir string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a mount namespace with a journal socket at /run/systemd/journal needs root")
	}
	unshare := testroles.Tool(t, "unshare")
	script := `mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && { [ -z "$0" ] || mount --bind "$0" /run/systemd/journal; } && exec "$@"`
	return []string{unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, dir}
}

// Under journald (JOURNAL_STREAM names stderr): every line goes through
// the native protocol, a worker's with the fields journalctl selects on
// (HOTCLUSTER_SLOT=1) and a priority per line; nothing is written as plain
// text. Without the journal's socket, plain lines on stderr, without a
// time (journald stamps them).
func TestJournalNative(t *testing.T) {
	t.Parallel()
	j := startFakeJournal(t)
	m := startSplit(t, inJournalNamespace(t, j.dir), []string{"JOURNAL_STREAM={stderr}"}, "log-printer",
		"--workers", "2", "--listen", "web=127.0.0.1:0", "--name", "shop")
	j.wait("serving", func(e map[string]string) bool {
		return strings.HasPrefix(e["MESSAGE"], "hotcluster: serving (master pid") && e["PRIORITY"] == "6" && e["SYSLOG_IDENTIFIER"] == "shop"
	})
	out := j.wait("of slot 1's stdout", func(e map[string]string) bool { return e["MESSAGE"] == "out: hello from g1 w1" })
	pid := out["HOTCLUSTER_WORKER_PID"]
	want := map[string]string{"PRIORITY": "6", "SYSLOG_IDENTIFIER": "shop", "SYSLOG_PID": pid, "HOTCLUSTER_GENERATION": "1",
		"HOTCLUSTER_SLOT": "1", "HOTCLUSTER_STREAM": "stdout"}
	for k, v := range want {
		if out[k] != v || pid == "" {
			t.Errorf("%s=%q, want %q: %v", k, out[k], v, out)
		}
	}
	errLine := j.wait("of slot 1's stderr", func(e map[string]string) bool { return e["MESSAGE"] == "err: trouble in g1 w1" })
	if errLine["PRIORITY"] != "3" || errLine["HOTCLUSTER_STREAM"] != "stderr" || errLine["HOTCLUSTER_WORKER_PID"] != pid {
		t.Errorf("stderr line: %v; want PRIORITY=3 from the same worker", errLine)
	}
	warn := j.wait("with <4>", func(e map[string]string) bool {
		return strings.HasSuffix(e["MESSAGE"], "a warning in the sd-daemon style")
	})
	if warn["MESSAGE"] != "a warning in the sd-daemon style" || warn["PRIORITY"] != "4" {
		t.Errorf("<4> line: %v; want PRIORITY=4 and the prefix left out", warn)
	}
	j.wait("of the JSON line", func(e map[string]string) bool {
		return strings.HasPrefix(e["MESSAGE"], `{"event":"boot"`) && e["HOTCLUSTER_SLOT"] == "0"
	})
	// `hotcluster logs` works the same under journald.
	if out := mustCtl(t, m.env, "logs", "--worker", "1", "-n", "100"); !strings.Contains(out, "[g1 w1] out: hello from g1 w1") || strings.Contains(out, "w0]") {
		t.Errorf("logs --worker 1 under journald:\n%s", out)
	}
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGTERM)
	<-m.done
	for _, l := range append(m.stderr.all(), m.stdout.all()...) {
		t.Errorf("a plain line beside the journal: %q", l)
	}

	// No socket: plain lines, no time.
	p := startSplit(t, inJournalNamespace(t, ""), []string{"JOURNAL_STREAM={stderr}"}, "log-printer",
		"--workers", "1", "--listen", "web=127.0.0.1:0")
	p.stderr.waitLine(`^hotcluster: serving \(master pid`)
	p.stderr.waitLine(`^\[g1 w0 err\] err: trouble in g1 w0$`)
	p.stdout.waitLine(`^\[g1 w0\] out: hello from g1 w0$`)
}
