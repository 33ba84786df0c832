package procstat

import (
	"errors"
	"os"
	"time"
)

// ErrNotSupported is returned by [Read] on platforms other than Linux.
var ErrNotSupported = errors.New("procstat: process statistics not supported")

// ErrNoProcess is wrapped by the error [Read] returns for a process that does
// not exist: it never did, or it exited and has been reaped. errors.Is
// matches such an error against [os.ErrNotExist] as well.
var ErrNoProcess error = noProcessError{}

type noProcessError struct{}

func (noProcessError) Error() string { return "procstat: no such process" }

// Is lets callers that only know the standard library test for a vanished
// process with os.ErrNotExist.
func (noProcessError) Is(target error) bool { return target == os.ErrNotExist }

// Stat is one reading of a process's figures.
type Stat struct {
	PID int

	// RSS is the resident set size in bytes: the pages of the process
	// currently in RAM, shared ones included.
	RSS uint64

	// CPUTime is the user plus system CPU time the process has used so far,
	// its threads included and its children excluded, in steps of 10ms.
	CPUTime time.Duration

	// Started is when the process was created, to within a second (see the
	// package documentation). It stays the same from one reading to the
	// next, so it tells a reused PID apart.
	Started time.Time

	// FDs is the number of open file descriptors, or -1 if the caller may
	// not look at them.
	FDs int

	// Stopped: the process is stopped (SIGSTOP, a debugger), so it serves
	// nothing however ready it said it was.
	Stopped bool

	// At is when the figures were read. [Sampler] divides by the time
	// between two readings' At; it carries a monotonic clock reading.
	At time.Time
}
