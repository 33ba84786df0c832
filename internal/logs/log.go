package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/internal/logfile"
	"github.com/hotcluster/hotcluster/internal/logring"
	"github.com/hotcluster/hotcluster/internal/logsink"
	"github.com/hotcluster/hotcluster/internal/systemd"
	"golang.org/x/sys/unix"
)

// Config says where the log goes and how it looks. Zero fields take the
// defaults.
type Config struct {
	// Name is the instance's name: SYSLOG_IDENTIFIER in the journal.
	Name   string
	Format Format
	// Time, when set, says whether text lines start with their time; by
	// default they do, except on the journal's stream, which stamps every
	// line itself.
	Time *bool
	// Color allows colours on an output that is a terminal (the caller
	// checks NO_COLOR); only for Text.
	Color bool
	// Level is the lowest level of the master's lines that is written.
	Level slog.Level
	// File, when set, takes the master's lines, and the workers' unless
	// WorkerFile is set, instead of stderr and stdout (or the journal).
	File string
	// WorkerFile, when set, takes the workers' lines.
	WorkerFile string
	// Rotate says how the files rotate.
	Rotate logfile.Config
	// NoJournal writes plain lines to stderr under journald too.
	NoJournal bool
	// Ring bounds the lines kept for `hotcluster logs`; NoRing keeps none.
	Ring   logring.Config
	NoRing bool
	// MaxQueued bounds the bytes waiting for each output (default
	// logsink.DefaultMaxQueued).
	MaxQueued int
	// Stdout and Stderr are the console: default os.Stdout and os.Stderr.
	Stdout, Stderr *os.File
}

// Log is the master's log: where its own lines and its workers' go. Its
// methods are safe for concurrent use and never wait for an output.
type Log struct {
	cfg     Config
	journal bool

	master, stdout, stderr []*output
	console                *output   // stderr, also when the log goes elsewhere
	all                    []*output // each output once
	files                  []*logfile.File
	ring                   *logring.Ring
	logger                 *slog.Logger
	closeOnce              sync.Once
}

// output is one place lines go, behind its own queue.
type output struct {
	name    string
	sink    *logsink.Sink
	style   Style
	journal string // the identifier, for the journal
}

func (o *output) encode(r *Record) []byte {
	if o.journal != "" {
		return appendJournal(make([]byte, 0, 160+len(r.Text)), o.journal, r)
	}
	return o.style.Append(make([]byte, 0, 64+len(r.Text)), r)
}

func (o *output) write(r *Record) { o.sink.Take(o.encode(r)) }

// Open makes the outputs cfg asks for, opening the log files (as package
// logfile says: the error is a *safedir.UnsafeError for a path another
// user could change). Close it when done.
//
// The master's lines go to File, else to the journal (when stderr is the
// journal's stream, its socket is there, and not NoJournal), else to
// stderr. The workers' lines go to WorkerFile, else File, else the
// journal, else each to the master's stream of the same name: stdout to
// stdout, stderr to stderr, so that `hotcluster run … > app.log` keeps
// what the workers print and lets hotcluster's own lines through to the
// terminal. When stdout and stderr are the same file (a terminal, 2>&1)
// one queue serves both, so that their lines keep their order.
func Open(cfg Config) (*Log, error) {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	l := &Log{cfg: cfg}
	if !cfg.NoRing {
		l.ring = logring.New(cfg.Ring)
	}
	underJournal := systemd.UnderJournal()
	timeOn := func(console bool) bool {
		if cfg.Time != nil {
			return *cfg.Time
		}
		return !console || !underJournal
	}
	style := func(f *os.File, console bool) Style {
		return Style{Format: cfg.Format, Time: timeOn(console),
			Color: cfg.Color && cfg.Format == Text && f != nil && isTerminal(f)}
	}
	l.console = l.newOutput("stderr", cfg.Stderr, style(cfg.Stderr, true), false)
	var stdout *output
	consoleOut := func() *output {
		if stdout == nil {
			if sameFile(cfg.Stdout, cfg.Stderr) {
				stdout = l.console
			} else {
				// Reported: when only stdout goes away (`| head`),
				// stderr can still say so.
				stdout = l.newOutput("stdout", cfg.Stdout, style(cfg.Stdout, true), true)
			}
		}
		return stdout
	}
	var file, journal *output
	if cfg.File != "" {
		f, err := logfile.Open(cfg.File, cfg.Rotate)
		if err != nil {
			l.Close(time.Second)
			return nil, err
		}
		l.files = append(l.files, f)
		file = l.newOutput(f.Path(), f, style(nil, false), true)
	}
	if file == nil && !cfg.NoJournal && underJournal && systemd.JournalEnabled() {
		l.journal = true
		journal = l.newOutput("journal", systemd.Journal{}, Style{}, true)
		journal.journal = cfg.Name
		if journal.journal == "" {
			journal.journal = "hotcluster"
		}
	}
	switch {
	case file != nil:
		l.master = []*output{file}
	case journal != nil:
		l.master = []*output{journal}
	default:
		l.master = []*output{l.console}
	}
	switch {
	case cfg.WorkerFile != "":
		f, err := logfile.Open(cfg.WorkerFile, cfg.Rotate)
		if err != nil {
			l.Close(time.Second)
			return nil, err
		}
		l.files = append(l.files, f)
		w := l.newOutput(f.Path(), f, style(nil, false), true)
		l.stdout, l.stderr = []*output{w}, []*output{w}
	case file != nil:
		l.stdout, l.stderr = l.master, l.master
	case journal != nil:
		l.stdout, l.stderr = l.master, l.master
	default:
		l.stdout, l.stderr = []*output{consoleOut()}, []*output{l.console}
	}
	l.logger = slog.New(&handler{l: l})
	return l, nil
}

// newOutput starts the queue of an output to w. With report, a failing
// output (a file, the journal, a stdout apart from stderr) is reported on
// the console, once per burst.
func (l *Log) newOutput(name string, w interface{ Write([]byte) (int, error) }, s Style, report bool) *output {
	o := &output{name: name, style: s}
	cfg := logsink.Config{
		MaxQueued: l.cfg.MaxQueued,
		Batch:     true,
		Notice: func(n uint64) []byte {
			r := l.masterRecord(slog.LevelWarn, fmt.Sprintf("dropped %d log lines: %s was not written fast enough, or failed (see hotcluster status)", n, name), nil)
			return o.encode(&r)
		},
	}
	if _, ok := w.(systemd.Journal); ok {
		cfg.Batch = false // an entry per datagram
	}
	if report {
		cfg.Failed = func(err error) {
			r := l.masterRecord(slog.LevelError, fmt.Sprintf("log %s: %v; its lines are dropped, and counted in hotcluster status, until it can be written again", name, err), nil)
			l.console.write(&r)
		}
	}
	o.sink = logsink.New(w, cfg)
	l.all = append(l.all, o)
	return o
}

// Logger returns the master's logger: each record, at or above the level,
// goes to the master's outputs and the ring.
func (l *Log) Logger() *slog.Logger { return l.logger }

// Journal reports whether the log goes to the journal natively.
func (l *Log) Journal() bool { return l.journal }

// MasterColor reports whether the master's lines go to a terminal in
// colour (the development loop paints its messages then).
func (l *Log) MasterColor() bool { return l.master[0].style.Color }

// Ring is the buffer of the last lines, nil with NoRing.
func (l *Log) Ring() *logring.Ring { return l.ring }

// Worker logs a line of a worker (see WorkerRecord). r.Text is not kept.
func (l *Log) Worker(r *Record) {
	outs := l.stdout
	if r.Stream == "stderr" {
		outs = l.stderr
	}
	for _, o := range outs {
		o.write(r)
	}
	if l.ring != nil {
		l.ring.Add(logring.Line{Time: r.Time, Gen: r.Gen, Slot: int32(r.Slot), PID: int32(r.PID),
			Stream: streamCode(r.Stream), Priority: int8(r.Priority), Text: string(r.Text[r.Skip:]), Cut: r.Cut})
	}
}

func streamCode(s string) uint8 {
	switch s {
	case "stdout":
		return 1
	case "stderr":
		return 2
	}
	return 0
}

// StreamName is the name of a logring.Line's Stream.
func StreamName(code uint8) string {
	switch code {
	case 1:
		return "stdout"
	case 2:
		return "stderr"
	}
	return ""
}

// RecordOf is the record of a kept line.
func RecordOf(line *logring.Line) Record {
	return Record{Time: line.Time, Priority: int(line.Priority), Master: line.Master, Gen: line.Gen,
		Slot: int(line.Slot), PID: int(line.PID), Stream: StreamName(line.Stream), Text: []byte(line.Text), Cut: line.Cut}
}

func (l *Log) masterRecord(level slog.Level, msg string, attrs []slog.Attr) Record {
	return Record{Time: time.Now(), Priority: priorityOf(level), Master: true, Text: []byte(msg), Attrs: attrs}
}

func (l *Log) logMaster(r *Record) {
	for _, o := range l.master {
		o.write(r)
	}
	if l.ring != nil {
		l.ring.Add(logring.Line{Time: r.Time, Master: true, Priority: int8(r.Priority), Text: string(plain(r.Text))})
	}
}

// Final logs err, the reason the master exits, as an error: to the
// master's outputs and, when they are not stderr, to stderr as well, so
// that a terminal or systemd's status shows it.
func (l *Log) Final(err error) {
	r := l.masterRecord(slog.LevelError, err.Error(), nil)
	l.logMaster(&r)
	if !slices.Contains(l.master, l.console) {
		l.console.write(&r)
	}
}

// Dropped counts the lines dropped by every output: not written fast
// enough, or failed.
func (l *Log) Dropped() uint64 {
	var n uint64
	for _, o := range l.all {
		n += o.sink.Dropped()
	}
	return n
}

// OutputStatus is what an output has done.
type OutputStatus struct {
	// Name is stderr, stdout, journal or a file's path.
	Name    string
	Dropped uint64
	// Err is the first error a write returned (it may have recovered).
	Err error
}

// Outputs says what each output in use has done.
func (l *Log) Outputs() []OutputStatus {
	var out []OutputStatus
	for _, o := range l.all {
		if o == l.console && !l.usesConsole() {
			continue
		}
		out = append(out, OutputStatus{Name: o.name, Dropped: o.sink.Dropped(), Err: o.sink.Err()})
	}
	return out
}

func (l *Log) usesConsole() bool {
	return slices.Contains(l.master, l.console) || slices.Contains(l.stderr, l.console)
}

// Reopen makes the log files be opened again by name (SIGUSR1, after
// logrotate moved them). It does not wait for a write in progress.
func (l *Log) Reopen() error {
	var errs []error
	for _, f := range l.files {
		errs = append(errs, f.Reopen())
	}
	return errors.Join(errs...)
}

// Files are the paths of the log files.
func (l *Log) Files() []string {
	var out []string
	for _, f := range l.files {
		out = append(out, f.Path())
	}
	return out
}

// Close stops taking lines and waits, until timeout in all, for the queued
// ones to be written (an output that blocks is given up on: see package
// logsink). It returns whether everything was written. Safe to call twice.
func (l *Log) Close(timeout time.Duration) bool {
	ok := true
	l.closeOnce.Do(func() {
		deadline := time.Now().Add(timeout)
		var mu sync.Mutex
		var wg sync.WaitGroup
		flushed := make(map[*output]bool)
		for _, o := range l.all {
			wg.Go(func() {
				done := o.sink.Close(time.Until(deadline))
				mu.Lock()
				flushed[o] = done
				ok = ok && done
				mu.Unlock()
			})
		}
		wg.Wait()
		// A file whose queue is still blocked in a write is left open: its
		// writer holds it.
		for i, f := range l.files {
			for _, o := range l.all {
				if o.name == f.Path() && flushed[o] {
					l.files[i].Close()
				}
			}
		}
	})
	return ok
}

// handler is the slog.Handler of the master's lines.
type handler struct {
	l     *Log
	attrs []slog.Attr
}

func (h *handler) Enabled(_ context.Context, level slog.Level) bool { return level >= h.l.cfg.Level }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	attrs := h.attrs
	if r.NumAttrs() > 0 {
		attrs = slices.Clip(attrs)
		r.Attrs(func(a slog.Attr) bool {
			attrs = append(attrs, a)
			return true
		})
	}
	rec := Record{Time: r.Time, Priority: priorityOf(r.Level), Master: true, Text: []byte(r.Message), Attrs: attrs}
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	h.l.logMaster(&rec)
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{l: h.l, attrs: append(slices.Clip(h.attrs), as...)}
}

// WithGroup is not used by the master: groups are flattened.
func (h *handler) WithGroup(string) slog.Handler { return h }

// fdOf calls fn with f's descriptor. Not f.Fd(), which would make a
// non-blocking stdout blocking, for the shell and everyone who shares it.
func fdOf(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	return fdOf(f, func(fd int) error {
		_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}) == nil
}

// sameFile reports whether a and b are the same open file (a terminal, or
// 2>&1): then their lines share a queue, to keep their order.
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	if fdOf(a, func(fd int) error { return unix.Fstat(fd, &sa) }) != nil ||
		fdOf(b, func(fd int) error { return unix.Fstat(fd, &sb) }) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
