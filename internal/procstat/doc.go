// Package procstat reads the figures the master reports about each worker
// process (resident memory, CPU time, start time, open descriptors) from
// Linux's /proc, and turns successive CPU-time readings into a CPU share.
//
// The invariant callers rely on: a [Stat] describes one process incarnation.
// [Stat.Started] is computed from the same cached boot time on every call, so
// two readings of one process carry equal Started values, and a different
// Started under the same PID means the PID was reused; [Sampler] uses this to
// never compute a CPU share across two different processes.
//
// # Reading
//
// [Read] reads /proc/PID/stat and counts /proc/PID/fd. The kernel reports CPU
// and start times in clock ticks of USER_HZ (100 per second on every Linux
// ABI), so CPU time has a resolution of 10ms; the boot time in /proc/stat has
// a resolution of one second, so Started may be up to a second earlier than
// the wall-clock instant the process was created. A process that has exited
// but has not yet been waited for (a zombie) still reads, with RSS 0; once it
// has been reaped, Read returns an error matching [ErrNoProcess].
//
// # Running under systemd
//
// No privileges are needed to read the master's own children. The kernel
// lets a caller list /proc/PID/fd only if it may ptrace the process (in
// practice, the same user); where it may not, [Stat.FDs] is -1 and the other
// figures are still filled in. A unit with ProtectProc=invisible
// or ProcSubset=pid still shows the master the processes of its own user, but
// ProcSubset=pid hides /proc/stat, so Read fails for lack of the boot time.
package procstat
