package logs

import (
	"log/slog"
	"time"
)

// Record is one line of the log: the master's own, or one its workers
// printed.
type Record struct {
	Time time.Time
	// Priority is the syslog priority, 0 (emerg) to 7 (debug): for the
	// master's lines from their level, for a worker's from its stream (3,
	// err, for stderr; 6, info, for stdout) or from a "<N>" the line starts
	// with (sd-daemon's convention, which journald also reads).
	Priority int
	// Master marks the master's own lines; Gen, Slot, PID and Stream
	// ("stdout", "stderr") say where a worker's line came from.
	Master bool
	Gen    uint64
	Slot   int
	PID    int
	Stream string
	// Text is the message or the line, without its newline.
	Text []byte
	// Skip is the length of a "<N>" prefix of Text, which the journal and
	// JSON carry as the priority instead.
	Skip int
	// Cut says the worker's line was cut at its maximum length.
	Cut bool
	// Attrs are a master line's attributes (for JSON).
	Attrs []slog.Attr
}

// Syslog priorities the log uses.
const (
	PrioError = 3
	PrioWarn  = 4
	PrioInfo  = 6
	PrioDebug = 7
)

// WorkerRecord makes the record of a worker's line: its priority from its
// stream, or from a leading "<N>".
func WorkerRecord(t time.Time, gen uint64, slot, pid int, stream string, text []byte, cut bool) Record {
	r := Record{Time: t, Gen: gen, Slot: slot, PID: pid, Stream: stream, Text: text, Cut: cut, Priority: PrioInfo}
	if stream == "stderr" {
		r.Priority = PrioError
	}
	if len(text) >= 3 && text[0] == '<' && text[2] == '>' && text[1] >= '0' && text[1] <= '7' {
		r.Priority, r.Skip = int(text[1]-'0'), 3
	}
	return r
}

// priorityOf maps a slog level to a syslog priority.
func priorityOf(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return PrioError
	case l >= slog.LevelWarn:
		return PrioWarn
	case l >= slog.LevelInfo:
		return PrioInfo
	}
	return PrioDebug
}

// LevelName is the level of a priority as JSON lines name it: error, warn,
// info, debug.
func LevelName(prio int) string {
	switch {
	case prio <= PrioError:
		return "error"
	case prio == PrioWarn:
		return "warn"
	case prio < PrioDebug:
		return "info"
	}
	return "debug"
}

// PriorityOfLevel is the priority of a LevelName.
func PriorityOfLevel(name string) int {
	switch name {
	case "error":
		return PrioError
	case "warn":
		return PrioWarn
	case "debug":
		return PrioDebug
	}
	return PrioInfo
}
