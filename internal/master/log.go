package master

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
)

// LogPrefix starts each of the master's own lines in text format.
const LogPrefix = "hotcluster: "

// NewLogger returns the master's logger, writing one line per record to
// out in a single Write (out is the master's non-blocking sink, shared
// with the workers' output lines):
//
//   - text: "hotcluster: " and the message, as hotcluster has always
//     written them; attributes are for JSON and not printed;
//   - json: one object per line, {"time","level","msg"} with the time in
//     UTC (RFC 3339, nanoseconds), the level in lower case (debug, info,
//     warn, error) as chosen where the event happens, and the record's
//     attributes (gen, slot, pid, …) as fields. Terminal colours are taken
//     out of the message.
//
// Records below level are dropped.
func NewLogger(out io.Writer, json bool, level slog.Level) *slog.Logger {
	if json {
		return slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level, ReplaceAttr: jsonAttr}))
	}
	return slog.New(&textHandler{out: out, level: level, mu: new(sync.Mutex)})
}

// colour matches the SGR escape sequences the development loop paints with.
var colour = regexp.MustCompile("\x1b\\[[0-9;]*m")

func jsonAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String(slog.TimeKey, a.Value.Time().UTC().Format(time.RFC3339Nano))
	case slog.LevelKey:
		return slog.String(slog.LevelKey, strings.ToLower(a.Value.String()))
	case slog.MessageKey:
		return slog.String(slog.MessageKey, colour.ReplaceAllString(a.Value.String(), ""))
	}
	return a
}

// textHandler writes "hotcluster: MESSAGE\n".
type textHandler struct {
	out   io.Writer
	level slog.Level
	mu    *sync.Mutex // shared by the handler's derivatives
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	buf := make([]byte, 0, len(LogPrefix)+len(r.Message)+1)
	buf = append(buf, LogPrefix...)
	buf = append(buf, r.Message...)
	buf = append(buf, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.out.Write(buf)
	return err
}

func (h *textHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *textHandler) WithGroup(string) slog.Handler      { return h }
