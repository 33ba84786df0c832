// Package logs is the master's log: every line, hotcluster's own and the
// ones its workers print, from where it is made to where it goes. The
// master logs through [Log.Logger] (log/slog, levels chosen where events
// happen) and hands each worker line to [Log.Worker]; the log formats
// each line once per output and queues it there.
//
// Invariant: nothing that logs ever waits for an output. Each output (the
// console's stderr and stdout, a log file, the journal) has its own
// bounded queue and writer (package internal/logsink): an output that is
// slow, full or gone costs its own lines, dropped, counted ([Log.Dropped],
// per output in [Log.Outputs]) and noticed once per burst, never a stalled
// pool loop or a worker blocked on its pipe.
//
// # Formats
//
// Text: the master's lines are "hotcluster: message", a worker's
// "[gN wS] line" for stdout and "[gN wS err] line" for stderr; with a time
// first (RFC 3339 to the millisecond) unless on the journal's stream; on a
// terminal the prefix has its slot's colour and "err" is red. JSON: one
// object per line, see [AppendJSON]; a worker line that is itself a JSON
// object stays an object. The journal: the native protocol with
// SYSLOG_IDENTIFIER, SYSLOG_PID and the HOTCLUSTER_* fields (see
// journal.go), a priority per line (err for stderr, info for stdout, or
// the line's own "<N>" prefix).
//
// # Where lines go
//
// See [Open]. The last lines of each worker, and the master's, are also
// kept in memory ([Log.Ring], package internal/logring) for `hotcluster
// logs`, whatever the outputs.
package logs
