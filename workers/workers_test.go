package workers

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	min, max := 100*time.Millisecond, 10*time.Second
	for n, want := range map[int]time.Duration{1: min, 2: 2 * min, 4: 8 * min, 20: max, 1000: max} {
		for i := 0; i < 50; i++ {
			d := backoff(n, min, max)
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("backoff(%d) = %s, want %s ±20%%", n, d, want)
			}
		}
	}
}

// Each line is handed on whole, with its worker, stream and a time; a line
// over MaxLine is cut there, marked, and the rest of it dropped, so that
// the next line starts clean.
func TestCopyLinesKeepsLinesWhole(t *testing.T) {
	t.Parallel()
	type got struct {
		text string
		cut  bool
	}
	var lines []got
	var tl tail
	exact := strings.Repeat("e", MaxLine)
	long := strings.Repeat("x", 3*MaxLine+17)
	in := "one\r\ntwo\n" + exact + "\n" + long + "\nafter\n" + long + "last without newline"
	before := time.Now()
	copyLines(strings.NewReader(in), func(l Line) {
		if l.Gen != 3 || l.Slot != 1 || l.PID != 42 || l.Stream != Stderr {
			t.Errorf("line from gen %d slot %d pid %d %s, want gen 3 slot 1 pid 42 stderr", l.Gen, l.Slot, l.PID, l.Stream)
		}
		if l.Time.Before(before) || l.Time.After(time.Now()) {
			t.Errorf("line time %s not when it was read", l.Time)
		}
		lines = append(lines, got{string(l.Text), l.Cut})
	}, Line{Gen: 3, Slot: 1, PID: 42, Stream: Stderr}, &tl)
	want := []got{{"one", false}, {"two", false}, {exact, false}, {long[:MaxLine], true}, {"after", false}, {long[:MaxLine], true}}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %.300v", len(lines), len(want), lines)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %d bytes, cut %v; want %d bytes, cut %v", i, len(lines[i].text), lines[i].cut, len(want[i].text), want[i].cut)
		}
	}
	if s := tl.String(); !strings.HasSuffix(s, "\n    | after\n    | "+long[:tailWidth]) {
		t.Errorf("tail %.200q", s)
	}
	for i := 0; i < 2*tailLines; i++ {
		tl.add([]byte("l"))
	}
	if n := strings.Count(tl.String(), "\n"); n != tailLines {
		t.Errorf("tail keeps %d lines, want %d", n, tailLines)
	}
}

// A line that never ends costs one MaxLine buffer, not the line: 64 MiB
// without a newline is read in a bounded heap.
func TestCopyLinesBoundsAnEndlessLine(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	var tl tail
	copyLines(io.LimitReader(zeros{}, 64<<20), func(l Line) {
		n++
		if !l.Cut || len(l.Text) != MaxLine {
			t.Errorf("line of %d bytes, cut %v; want the first %d, cut", len(l.Text), l.Cut, MaxLine)
		}
	}, Line{}, &tl)
	runtime.ReadMemStats(&after)
	if n != 1 {
		t.Errorf("%d lines, want 1", n)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8*MaxLine {
		t.Errorf("reading a 64 MiB line allocated %d bytes; want less than %d", grew, 8*MaxLine)
	}
}

// zeros reads as endless 'z's.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestResolveCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exe := filepath.Join(dir, "server")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir, want, err string }{
		{name: "./server", dir: dir, want: exe},
		{name: exe, want: exe},
		{name: "sh", want: "/sh"},
		{name: "./data", dir: dir, err: "is not executable (mode -rw-r--r--); chmod +x it"},
		{name: "./missing", dir: dir, err: filepath.Join(dir, "missing") + " does not exist"},
		{name: ".", dir: dir, err: "not found in PATH"},
		{name: dir + "/", err: "is a directory"},
		{name: "", err: "no worker command"},
	} {
		got, err := ResolveCommand(tc.name, tc.dir)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ResolveCommand(%q) = %q, %v; want error with %q", tc.name, got, err, tc.err)
			}
			continue
		}
		if err != nil || !strings.HasSuffix(got, tc.want) {
			t.Errorf("ResolveCommand(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestWorkerEnvKeepsTheContractOnTop(t *testing.T) {
	t.Parallel()
	p := &Pool{
		baseEnv: []string{"PATH=/bin", "FOO=from-master", "NOTIFY_SOCKET=/run/systemd/notify",
			"LISTEN_PID=1", "WATCHDOG_USEC=1", "HOTCLUSTER_GENERATION=7", "KEEP=1"},
	}
	env := p.workerEnv(spawnSpec{gen: 3, slot: 1, size: 4, names: []string{"web", "api"}, env: []string{"FOO=from-flag", "LISTEN_FDS=99"}}, "/tmp/x/n")
	got := map[string][]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = append(got[k], v)
	}
	for k, want := range map[string]string{
		"PATH": "/bin", "KEEP": "1", "FOO": "from-flag", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:api",
		"NOTIFY_SOCKET": "/tmp/x/n", "HOTCLUSTER_GENERATION": "3", "HOTCLUSTER_WORKER_ID": "1",
		"HOTCLUSTER_WORKERS": "4", "HOTCLUSTER_SHIM": strconv.Itoa(os.Getpid()),
	} {
		// os/exec lets the last entry win.
		if v := got[k]; len(v) == 0 || v[len(v)-1] != want {
			t.Errorf("%s = %v, want last %q", k, v, want)
		}
	}
	for _, k := range []string{"LISTEN_PID", "WATCHDOG_USEC"} {
		if v, ok := got[k]; ok {
			t.Errorf("%s leaked from the master: %v", k, v)
		}
	}
	if v := got["FOO"]; len(v) != 1 {
		t.Errorf("FOO = %v, want only the --env value", v)
	}
}

func TestParseReadyMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]ReadyMode{"auto": ReadyAuto, "": ReadyAuto, "notify": ReadyNotify, "delay": ReadyDelay} {
		if got, err := ParseReadyMode(in); err != nil || got != want {
			t.Errorf("ParseReadyMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseReadyMode("soon"); err == nil || !strings.Contains(err.Error(), "want auto, notify or delay") {
		t.Errorf("ParseReadyMode(soon) error = %v", err)
	}
}

func TestBucketWait(t *testing.T) {
	t.Parallel()
	now := time.Unix(100, 0)
	b := newBucket(1000, 2)
	for i := 0; i < 2; i++ {
		if d := b.wait(now); d != 0 || !b.take(now) {
			t.Fatalf("token %d of the burst: wait %v", i, d)
		}
	}
	if d := b.wait(now); d != time.Millisecond {
		t.Fatalf("empty bucket at 1000/s: wait %v, want 1ms", d)
	}
	now = now.Add(500 * time.Microsecond)
	if d := b.wait(now); d != 500*time.Microsecond {
		t.Fatalf("half a token later: wait %v, want 500µs", d)
	}
	now = now.Add(10 * time.Second)
	if d := b.wait(now); d != 0 || !b.take(now) || !b.take(now) || b.take(now) {
		t.Fatal("after a long pause the bucket should hold exactly its burst")
	}
}
