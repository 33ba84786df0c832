package workers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// maxLine bounds one output line; a longer one is written in pieces of
// this size, each with its own prefix.
const maxLine = 1 << 20

// tailLines is how many of a worker's last output lines a failure report
// quotes.
const tailLines = 10

// lineWriter serialises whole lines from every worker and from the master's
// own log onto one writer, so that no line is ever split or interleaved.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes p, which must end in a newline, in one call.
func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

// tail keeps the last lines a worker printed.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, string(line))
}

// String returns the kept lines, each indented, or "" when there are none.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	var b strings.Builder
	for _, l := range t.lines {
		b.WriteString("\n    | ")
		b.WriteString(l)
	}
	return b.String()
}

// copyLines reads r until EOF or error and writes each line to out with
// prefix, recording it in t.
func copyLines(r io.Reader, out *lineWriter, prefix string, t *tail) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		full := len(line) > 0 && line[len(line)-1] == '\n'
		if full || len(line) >= maxLine || (err != nil && !errors.Is(err, bufio.ErrBufferFull) && len(line) > 0) {
			text := bytes.TrimRight(line, "\r\n")
			t.add(text)
			buf := make([]byte, 0, len(prefix)+len(text)+1)
			buf = append(buf, prefix...)
			buf = append(buf, text...)
			buf = append(buf, '\n')
			out.Write(buf)
			line = line[:0]
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// prefix is what starts each output line of a worker.
func (p *Pool) prefix(gen uint64, slot int) string {
	if p.cfg.LinePrefix != nil {
		return p.cfg.LinePrefix(gen, slot)
	}
	return fmt.Sprintf("[g%d w%d] ", gen, slot)
}

// logf logs a line at level, with the attributes of w (gen, slot, pid)
// when w is not nil.
func (p *Pool) logf(level slog.Level, w *worker, format string, args ...any) {
	ctx := context.Background()
	if !p.log.Enabled(ctx, level) {
		return
	}
	var attrs []any
	if w != nil {
		attrs = []any{"gen", w.gen, "slot", w.slot, "pid", w.pid}
	}
	p.log.Log(ctx, level, fmt.Sprintf(format, args...), attrs...)
}

// genf logs a line at level about generation gen.
func (p *Pool) genf(level slog.Level, gen uint64, format string, args ...any) {
	ctx := context.Background()
	if p.log.Enabled(ctx, level) {
		p.log.Log(ctx, level, fmt.Sprintf(format, args...), "gen", gen)
	}
}
