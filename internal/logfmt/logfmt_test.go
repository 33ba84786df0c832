package logfmt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Format
		ok   bool
	}{
		{"text", FormatText, true},
		{"json", FormatJSON, true},
		{"", 0, false},
		{"JSON", 0, false},
		{"logfmt", 0, false},
	} {
		got, err := ParseFormat(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "want text or json") {
			t.Errorf("ParseFormat(%q) error %q does not say what is valid", tc.in, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestJSON(t *testing.T) {
	var out bytes.Buffer
	w := JSON(&out, "hotcluster: ")
	at := time.Date(2025, 11, 26, 10, 4, 5, 123456789, time.FixedZone("CET", 3600))
	w.(*jsonWriter).now = func() time.Time { return at }
	l := log.New(w, "hotcluster: ", 0)
	l.Printf("gen 2 ready in 412ms (4 workers)")
	l.Printf("reload failed: gen 3 exited: exit status 1\n  last line <b> & \"quoted\"")
	l.Printf("\x1b[32mgen 4 ready\x1b[0m")
	l.Printf("") // an empty message is still a line

	want := []entry{
		{"2025-11-26T09:04:05.123456789Z", "info", "gen 2 ready in 412ms (4 workers)"},
		{"2025-11-26T09:04:05.123456789Z", "error", "reload failed: gen 3 exited: exit status 1\n  last line <b> & \"quoted\""},
		{"2025-11-26T09:04:05.123456789Z", "info", "gen 4 ready"},
		{"2025-11-26T09:04:05.123456789Z", "info", ""},
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, `{"time":"`) {
			t.Errorf("line %d %q: want the keys in the order time, level, msg", i, line)
		}
		var got entry
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
		if got != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, got, want[i])
		}
	}
	if !strings.Contains(lines[1], `<b> & \"quoted\"`) {
		t.Errorf("line %q: want no HTML escaping", lines[1])
	}
}

func TestJSONWithoutPrefix(t *testing.T) {
	var out bytes.Buffer
	w := JSON(&out, "hotcluster: ")
	if n, err := w.Write([]byte("no prefix here\n")); n != 15 || err != nil {
		t.Fatalf("Write = %d, %v; want 15, nil", n, err)
	}
	var got entry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Msg != "no prefix here" {
		t.Errorf("msg = %q", got.Msg)
	}
	if _, err := time.Parse(time.RFC3339Nano, got.Time); err != nil {
		t.Errorf("time %q: %v", got.Time, err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestJSONWriteError(t *testing.T) {
	if _, err := JSON(failingWriter{}, "").Write([]byte("x\n")); err == nil || err.Error() != "disk full" {
		t.Errorf("Write error = %v, want disk full", err)
	}
}

// Loggers sharing a writer never interleave their lines.
func TestJSONConcurrent(t *testing.T) {
	var out bytes.Buffer
	w := JSON(&out, "p: ")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.New(w, "p: ", 0)
			for i := range 100 {
				l.Printf("logger %d line %d %s", g, i, strings.Repeat("x", 200))
			}
		}()
	}
	wg.Wait()
	n := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d %q: %v", n, sc.Text(), err)
		}
		n++
	}
	if n != 800 {
		t.Errorf("got %d lines, want 800", n)
	}
}

func TestLevel(t *testing.T) {
	for msg, want := range map[string]string{
		"gen 2 ready in 412ms":                       "info",
		"reload failed: gen 3 not ready":             "error",
		"build failed after 2s":                      "error",
		"watcher stopped: some Error":                "error",
		"worker 3 still running; killing it":         "error",
		"listening on 127.0.0.1:8080 as web (steer)": "info",
	} {
		if got := Level(msg); got != want {
			t.Errorf("Level(%q) = %q, want %q", msg, got, want)
		}
	}
}
