package systemd

import (
	"errors"
	"maps"
	"testing"
)

// What JournalEntry makes, Journal.Write reads back: priority, fields
// (a newline in a value cuts it) and a message that may hold newlines.
func TestJournalEntry(t *testing.T) {
	t.Parallel()
	e := NewJournalEntry(nil, 3).Field("SYSLOG_IDENTIFIER", "shop").FieldInt("HOTCLUSTER_SLOT", 2).
		Field("X", "cut\nhere").Message([]byte("gen 2 failed:"), []byte("\n    | last line"))
	prio, vars, msg, err := parseEntry(e)
	want := map[string]string{"SYSLOG_IDENTIFIER": "shop", "HOTCLUSTER_SLOT": "2", "X": "cut"}
	if err != nil || prio != 3 || !maps.Equal(vars, want) || msg != "gen 2 failed:\n    | last line" {
		t.Errorf("parsed %d %v %q %v", prio, vars, msg, err)
	}
	if p, _, _, _ := parseEntry(NewJournalEntry(nil, 12).Message(nil)); p != 7 {
		t.Errorf("priority 12 became %d, want 7", p)
	}
	for _, bad := range []string{"", "9\n\nm", "x\n\nm", "3\nNOVALUE\n\nm", "3\nA=1"} {
		if _, _, _, err := parseEntry([]byte(bad)); !errors.Is(err, errEntry) {
			t.Errorf("parseEntry(%q) = %v, want errEntry", bad, err)
		}
	}
}
