// Package logfmt formats hotcluster's own log lines, as text (what a
// *log.Logger writes) or as JSON, one object per line, for log collectors.
//
// A JSON line is
//
//	{"time":"2025-11-26T10:04:05.123456789Z","level":"info","msg":"gen 2 ready in 412ms (4 workers)"}
//
// with the time in UTC, RFC 3339 with nanoseconds, taken when the line is
// written. The level is a heuristic, since hotcluster's log calls carry
// none: "error" when the message contains "fail", "error", "panic",
// "crash" or "kill" (in any case), else "info". A message keeps its inner
// newlines (a crashed worker's last lines of output), escaped; terminal
// colour sequences are removed.
package logfmt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Format is the format of log lines.
type Format int

const (
	// FormatText is plain lines, as a *log.Logger writes them.
	FormatText Format = iota
	// FormatJSON is one JSON object per line (see the package doc).
	FormatJSON
)

// String returns "text" or "json", as ParseFormat accepts.
func (f Format) String() string {
	switch f {
	case FormatText:
		return "text"
	case FormatJSON:
		return "json"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat returns the Format named "text" or "json".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text":
		return FormatText, nil
	case "json":
		return FormatJSON, nil
	}
	return 0, fmt.Errorf("log format %q: want text or json", s)
}

// JSON returns a writer for a *log.Logger that writes each line it is given
// to w as one JSON object line. Each Write is one log entry (a *log.Logger
// makes one Write per entry): prefix, if the entry starts with it, and the
// final newline are removed, and the rest is the message. Give the logger
// no date or time flags: the object has its own time. The writer is safe
// for concurrent use; it writes each object to w with a single Write, and
// returns w's error.
func JSON(w io.Writer, prefix string) io.Writer {
	return &jsonWriter{w: w, prefix: prefix, now: time.Now}
}

type jsonWriter struct {
	w      io.Writer
	prefix string
	now    func() time.Time // time.Now but in tests

	mu  sync.Mutex
	buf bytes.Buffer
}

// entry is one JSON line; the field order is the output's.
type entry struct {
	Time  string `json:"time"`
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// colour matches the SGR escape sequences devloop paints with.
var colour = regexp.MustCompile("\x1b\\[[0-9;]*m")

func (j *jsonWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	msg = strings.TrimPrefix(msg, j.prefix)
	msg = colour.ReplaceAllString(msg, "")
	e := entry{Time: j.now().UTC().Format(time.RFC3339Nano), Level: Level(msg), Msg: msg}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf.Reset()
	enc := json.NewEncoder(&j.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil { // cannot fail for strings
		return 0, err
	}
	if _, err := j.w.Write(j.buf.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// errorWords make a message an error; see the package doc.
var errorWords = []string{"fail", "error", "panic", "crash", "kill"}

// Level returns the level a JSON line gives msg: "error" or "info" (see the
// package doc).
func Level(msg string) string {
	lower := strings.ToLower(msg)
	for _, w := range errorWords {
		if strings.Contains(lower, w) {
			return "error"
		}
	}
	return "info"
}
