package logs

import (
	"github.com/hotcluster/hotcluster/internal/systemd"
)

// Journal fields of the workers' lines, so that `journalctl -u app
// HOTCLUSTER_SLOT=2` selects one worker.
const (
	FieldGeneration = "HOTCLUSTER_GENERATION"
	FieldSlot       = "HOTCLUSTER_SLOT"
	FieldWorkerPID  = "HOTCLUSTER_WORKER_PID"
	FieldStream     = "HOTCLUSTER_STREAM"
	FieldCut        = "HOTCLUSTER_CUT"
)

// appendJournal appends r as an entry for systemd.Journal: priority,
// SYSLOG_IDENTIFIER ident, and for a worker's line SYSLOG_PID (the
// worker's, so that journalctl shows "ident[pid]: line") and the fields
// above; the master's lines carry them too when they are about a worker.
func appendJournal(buf []byte, ident string, r *Record) []byte {
	e := systemd.NewJournalEntry(buf, r.Priority).Field("SYSLOG_IDENTIFIER", ident)
	if r.Master {
		for _, a := range r.Attrs {
			v := a.Value.Resolve()
			switch a.Key {
			case "gen":
				e = e.Field(FieldGeneration, v.String())
			case "slot":
				e = e.Field(FieldSlot, v.String())
			case "pid":
				e = e.Field(FieldWorkerPID, v.String())
			}
		}
		return e.Message([]byte(MasterPrefix), plain(r.Text))
	}
	e = e.FieldInt("SYSLOG_PID", int64(r.PID)).
		FieldInt(FieldGeneration, int64(r.Gen)).
		FieldInt(FieldSlot, int64(r.Slot)).
		FieldInt(FieldWorkerPID, int64(r.PID)).
		Field(FieldStream, r.Stream)
	if r.Cut {
		return e.Field(FieldCut, "1").Message(r.Text[r.Skip:], []byte(CutMarker))
	}
	return e.Message(r.Text[r.Skip:])
}
