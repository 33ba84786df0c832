package logs

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"
)

// MasterPrefix starts each of the master's own lines in text.
const MasterPrefix = "hotcluster: "

// CutMarker ends a worker's line that was cut at its maximum length
// (workers.MaxLine), in text and in the journal.
const CutMarker = " [hotcluster: line cut at 64 KiB]"

// TextTime is the layout of a text line's time: RFC 3339, to the
// millisecond, in local time with its offset.
const TextTime = "2006-01-02T15:04:05.000Z07:00"

// Format is how lines are written.
type Format int

// The formats.
const (
	// Text: "hotcluster: message" for the master's lines, "[gN wS] line"
	// for a worker's stdout and "[gN wS err] line" for its stderr.
	Text Format = iota
	// JSON: one object per line, see AppendJSON.
	JSON
)

// Style is how one output writes lines.
type Style struct {
	Format Format
	// Time starts text lines with their time (TextTime).
	Time bool
	// Color paints a text line's prefix in its slot's colour, and the
	// stream marker of stderr in red, for a terminal.
	Color bool
}

// Append appends r as one line, with its newline.
func (s Style) Append(buf []byte, r *Record) []byte {
	if s.Format == JSON {
		return append(AppendJSON(buf, r), '\n')
	}
	return s.appendText(buf, r)
}

// slotColors are the colours of worker line prefixes by slot, so that a
// slot keeps its colour across generations.
var slotColors = []string{"36", "35", "33", "32", "34", "96", "95", "93", "92", "94"}

func (s Style) appendText(buf []byte, r *Record) []byte {
	if s.Time {
		buf = r.Time.AppendFormat(buf, TextTime)
		buf = append(buf, ' ')
	}
	if r.Master {
		buf = append(buf, MasterPrefix...)
		buf = append(buf, r.Text...)
		return append(buf, '\n')
	}
	var c string
	if s.Color {
		c = slotColors[r.Slot%len(slotColors)]
		buf = append(buf, "\x1b["...)
		buf = append(buf, c...)
		buf = append(buf, 'm')
	}
	buf = append(buf, "[g"...)
	buf = strconv.AppendUint(buf, r.Gen, 10)
	buf = append(buf, " w"...)
	buf = strconv.AppendInt(buf, int64(r.Slot), 10)
	if r.Stream == "stderr" {
		if s.Color {
			buf = append(buf, " \x1b[31merr\x1b["...)
			buf = append(buf, c...)
			buf = append(buf, 'm')
		} else {
			buf = append(buf, " err"...)
		}
	}
	buf = append(buf, ']')
	if s.Color {
		buf = append(buf, "\x1b[0m"...)
	}
	buf = append(buf, ' ')
	buf = append(buf, r.Text...)
	if r.Cut {
		buf = append(buf, CutMarker...)
	}
	return append(buf, '\n')
}

// colour matches the SGR escape sequences the development loop paints its
// messages with, which JSON and the journal leave out.
var colour = regexp.MustCompile("\x1b\\[[0-9;]*m")

// plain is msg without colours.
func plain(msg []byte) []byte {
	for _, b := range msg {
		if b == 0x1b {
			return colour.ReplaceAll(msg, nil)
		}
	}
	return msg
}

// AppendJSON appends r as one JSON object, without a newline:
//
//	{"time":"2026-11-25T10:00:00.123456789Z","level":"info","msg":"…",
//	 "gen":3,"slot":1,"pid":4242,"stream":"stdout"}
//
// time in UTC (RFC 3339, nanoseconds), level error, warn, info or debug.
// The master's lines have its attributes (gen, slot, pid, …) and no
// stream. A worker's line that is a JSON object is kept as one, in "json"
// instead of "msg", so that log shippers parse it; a cut line has
// "cut":true.
func AppendJSON(buf []byte, r *Record) []byte {
	buf = append(buf, `{"time":"`...)
	buf = r.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","level":"`...)
	buf = append(buf, LevelName(r.Priority)...)
	buf = append(buf, '"')
	text := r.Text[r.Skip:]
	if r.Master {
		buf = append(buf, `,"msg":`...)
		buf = appendString(buf, plain(text))
		for _, a := range r.Attrs {
			buf = appendAttr(buf, a)
		}
		return append(buf, '}')
	}
	if IsJSONObject(text) && !r.Cut {
		buf = append(buf, `,"json":`...)
		buf = append(buf, text...)
	} else {
		buf = append(buf, `,"msg":`...)
		buf = appendString(buf, text)
	}
	buf = append(buf, `,"gen":`...)
	buf = strconv.AppendUint(buf, r.Gen, 10)
	buf = append(buf, `,"slot":`...)
	buf = strconv.AppendInt(buf, int64(r.Slot), 10)
	buf = append(buf, `,"pid":`...)
	buf = strconv.AppendInt(buf, int64(r.PID), 10)
	buf = append(buf, `,"stream":"`...)
	buf = append(buf, r.Stream...)
	buf = append(buf, '"')
	if r.Cut {
		buf = append(buf, `,"cut":true`...)
	}
	return append(buf, '}')
}

// IsJSONObject reports whether b is one JSON object (spaces around it
// allowed).
func IsJSONObject(b []byte) bool {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i < len(b) && b[i] == '{' && json.Valid(b)
}

// appendAttr appends ,"key":value as slog's JSON handler would.
func appendAttr(buf []byte, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if a.Key == "" || v.Kind() == slog.KindGroup {
		return buf
	}
	buf = append(buf, ',')
	buf = appendString(buf, []byte(a.Key))
	buf = append(buf, ':')
	switch v.Kind() {
	case slog.KindString:
		return appendString(buf, []byte(v.String()))
	case slog.KindInt64:
		return strconv.AppendInt(buf, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(buf, v.Uint64(), 10)
	case slog.KindFloat64:
		if f := v.Float64(); !math.IsInf(f, 0) && !math.IsNaN(f) {
			return strconv.AppendFloat(buf, f, 'g', -1, 64)
		}
		return appendString(buf, []byte(v.String()))
	case slog.KindBool:
		return strconv.AppendBool(buf, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(buf, int64(v.Duration()), 10)
	case slog.KindTime:
		buf = append(buf, '"')
		buf = v.Time().UTC().AppendFormat(buf, time.RFC3339Nano)
		return append(buf, '"')
	}
	b, err := json.Marshal(v.Any())
	if err != nil {
		return appendString(buf, []byte(fmt.Sprint(v.Any())))
	}
	return append(buf, b...)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped (as encoding/json does, for JavaScript readers).
func appendString(buf, s []byte) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
