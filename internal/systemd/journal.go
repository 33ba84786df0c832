package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// UnderJournal reports whether the master's stderr is the journal's stream
// (JOURNAL_STREAM names it, as systemd sets it for StandardError=journal):
// then journald stamps every line with its time, its unit and its PID, and
// the master should speak the native protocol if [JournalEnabled].
func UnderJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return ok && err == nil
}

// JournalEnabled reports whether journald's native socket
// (/run/systemd/journal/socket) takes datagrams.
func JournalEnabled() bool { return journal.Enabled() }

// Journal sends entries to journald through its native protocol
// (go-systemd's journal package), with fields of their own, so that
// `journalctl -u app HOTCLUSTER_SLOT=2` and `journalctl -p err` select
// lines. Each Write is one entry, made as a [JournalEntry]: Journal is
// the output of a queue (package internal/logsink) and the only place the
// master waits for journald, so a slow or restarting journald costs queued
// lines, never a stalled master.
type Journal struct{}

// errEntry is an entry that JournalEntry did not make.
var errEntry = errors.New("systemd: malformed journal entry")

// Write sends the entry p to journald. It blocks while journald's socket
// is full.
func (Journal) Write(p []byte) (int, error) {
	prio, vars, msg, err := parseEntry(p)
	if err != nil {
		return 0, err
	}
	if err := journal.Send(msg, journal.Priority(prio), vars); err != nil {
		return 0, fmt.Errorf("systemd: journal: %w", err)
	}
	return len(p), nil
}

// parseEntry reads an entry that JournalEntry made.
func parseEntry(p []byte) (prio int, vars map[string]string, msg string, err error) {
	head, rest, ok := bytes.Cut(p, []byte{'\n'})
	prio, err = strconv.Atoi(string(head))
	if !ok || err != nil || prio < 0 || prio > 7 {
		return 0, nil, "", errEntry
	}
	for {
		var field []byte
		field, rest, ok = bytes.Cut(rest, []byte{'\n'})
		if !ok {
			return 0, nil, "", errEntry
		}
		if len(field) == 0 {
			return prio, vars, string(rest), nil // the message follows
		}
		k, v, ok := bytes.Cut(field, []byte{'='})
		if !ok {
			return 0, nil, "", errEntry
		}
		if vars == nil {
			vars = make(map[string]string, 8)
		}
		vars[string(k)] = string(v)
	}
}

// JournalEntry is an entry for [Journal.Write] being made: its priority,
// then fields, then the message.
type JournalEntry []byte

// NewJournalEntry starts an entry of syslog priority prio (0 emerg … 7
// debug) in buf.
func NewJournalEntry(buf []byte, prio int) JournalEntry {
	buf = strconv.AppendInt(buf, int64(min(max(prio, 0), 7)), 10)
	return append(buf, '\n')
}

// Field adds a field: name in upper case letters, digits and underscores,
// value without a newline (one is cut there).
func (e JournalEntry) Field(name, value string) JournalEntry {
	if i := strings.IndexByte(value, '\n'); i >= 0 {
		value = value[:i]
	}
	e = append(e, name...)
	e = append(e, '=')
	e = append(e, value...)
	return append(e, '\n')
}

// FieldInt adds a field with a number.
func (e JournalEntry) FieldInt(name string, v int64) JournalEntry {
	e = append(e, name...)
	e = append(e, '=')
	e = strconv.AppendInt(e, v, 10)
	return append(e, '\n')
}

// Message ends the entry with the message, made of parts; it may hold
// newlines.
func (e JournalEntry) Message(parts ...[]byte) []byte {
	e = append(e, '\n')
	for _, p := range parts {
		e = append(e, p...)
	}
	return e
}
