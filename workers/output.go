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
	"time"
)

// MaxLine bounds one output line of a worker. A longer line is cut: the
// first MaxLine bytes are handed on at once, marked [Line.Cut], and the
// rest, up to the next newline, is read and dropped. So a worker that
// prints 50 MB without a newline costs the master one MaxLine buffer per
// stream, never the line.
const MaxLine = 64 << 10

// tailLines is how many of a worker's last output lines a failure report
// quotes, and tailWidth how much of each.
const (
	tailLines = 10
	tailWidth = 512
)

// Stream says which output of a worker a line came from.
type Stream uint8

// The streams.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "unknown"
}

// Line is one line a worker printed, as the pool hands it to
// [Config.Lines]: what it says and where it came from, without any
// presentation (prefixes, colours, formats are the receiver's).
type Line struct {
	Gen    uint64
	Slot   int
	PID    int
	Stream Stream
	// Time is when the master read the end of the line.
	Time time.Time
	// Text is the line without its end ("\n" or "\r\n"). It is valid only
	// until the call returns: a receiver that keeps it copies it.
	Text []byte
	// Cut says the line was longer than MaxLine: Text holds its first
	// MaxLine bytes, and the rest was dropped.
	Cut bool
}

// lineWriter serialises whole lines from every worker onto one writer, so
// that no line is ever split or interleaved: the default of Config.Lines.
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

// line writes l as "[gN wS] text".
func (lw *lineWriter) line(l Line) {
	buf := make([]byte, 0, 24+len(l.Text))
	buf = fmt.Appendf(buf, "[g%d w%d] ", l.Gen, l.Slot)
	buf = append(buf, l.Text...)
	buf = append(buf, '\n')
	lw.Write(buf)
}

// tail keeps the last lines a worker printed, each cut to tailWidth, in a
// ring whose buffers are reused: it sees every line of a worker that
// floods.
type tail struct {
	mu    sync.Mutex
	lines [tailLines][]byte
	next  int // where the next line goes
	n     int // lines kept
}

func (t *tail) add(line []byte) {
	if len(line) > tailWidth {
		line = line[:tailWidth]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines[t.next] = append(t.lines[t.next][:0], line...)
	t.next = (t.next + 1) % tailLines
	t.n = min(t.n+1, tailLines)
}

// String returns the kept lines, oldest first, each indented, or "" when
// there are none.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for i := range t.n {
		b.WriteString("\n    | ")
		b.Write(t.lines[(t.next-t.n+i+tailLines)%tailLines])
	}
	return b.String()
}

func withStream(l Line, s Stream) Line {
	l.Stream = s
	return l
}

// copyLines reads r until EOF or error and hands each line to out, with
// the fields of tmpl, recording it in t. A line longer than MaxLine is cut
// (see MaxLine).
func copyLines(r io.Reader, out func(Line), tmpl Line, t *tail) {
	br := bufio.NewReaderSize(r, MaxLine)
	var line []byte // a line that spans reads
	cutting := false
	emit := func(text []byte, cut bool) {
		text = bytes.TrimRight(text, "\r\n")
		t.add(text)
		l := tmpl
		l.Time, l.Text, l.Cut = time.Now(), text, cut
		out(l)
	}
	for {
		chunk, err := br.ReadSlice('\n')
		full := len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
		switch {
		case cutting:
			// The rest of a line that was cut: dropped up to its end.
			cutting = !full
		case full && len(line) == 0:
			// The common case: the line is whole in the reader's buffer.
			emit(chunk, false)
		default:
			// A line that spans reads, or the last one without a newline.
			body := chunk
			if full {
				body = chunk[:len(chunk)-1]
			}
			if room := MaxLine - len(line); len(body) > room {
				line = append(line, body[:room]...)
				emit(line, true)
				line = line[:0]
				cutting = !full
				break
			}
			line = append(line, chunk...)
			if full || err != nil && !errors.Is(err, bufio.ErrBufferFull) && len(line) > 0 {
				emit(line, false)
				line = line[:0]
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
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
