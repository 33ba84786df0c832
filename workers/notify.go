package workers

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/hotcluster/hotcluster/internal/protocol"
)

// notifyLines splits a datagram of the notify protocol into its
// assignments (sd_notify(3): newline-separated VAR=VALUE), skipping empty
// lines and lines that are not valid UTF-8, which no sender means.
func notifyLines(b []byte) []string {
	var out []string
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if len(line) == 0 || !utf8.Valid(line) {
			continue
		}
		out = append(out, string(line))
	}
	return out
}

// notifyKind is what the pool makes of one assignment.
type notifyKind int

const (
	notifyOther notifyKind = iota
	notifyReady
	notifyStatus
	notifyWatchdog
	notifyWatchdogTrigger
	notifyDrains
)

// parseNotify reads one assignment: READY=1, or STATUS= and its text.
func parseNotify(line string) (notifyKind, string) {
	switch {
	case line == protocol.NotifyReady:
		return notifyReady, ""
	case line == protocol.NotifyWatchdog:
		return notifyWatchdog, ""
	case line == protocol.NotifyWatchdogTrigger:
		return notifyWatchdogTrigger, ""
	case line == protocol.NotifyDrainsKeepAlive:
		return notifyDrains, ""
	case strings.HasPrefix(line, protocol.NotifyStatus):
		return notifyStatus, strings.TrimPrefix(line, protocol.NotifyStatus)
	}
	return notifyOther, ""
}
