package procstat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// tick is one clock tick of the times in /proc/PID/stat. The kernel scales
// them to USER_HZ, which is 100 on every Linux ABI whatever the kernel's
// internal HZ (see sysconf(_SC_CLK_TCK) and procfs's own userHZ).
const tick = time.Second / 100

var procFS = sync.OnceValues(procfs.NewDefaultFS)

// bootTime is read once: the kernel derives btime in /proc/stat from the
// current wall clock minus the uptime, so it can shift by a second between
// reads (or more after the clock is stepped), and a Started that moved would
// look like a reused PID.
var bootTime = sync.OnceValues(func() (time.Time, error) {
	pfs, err := procFS()
	if err != nil {
		return time.Time{}, err
	}
	st, err := pfs.Stat()
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(int64(st.BootTime), 0), nil
})

// Read reads the figures of process pid. It does not block beyond the reads
// of a few /proc files and is safe to call from several goroutines.
//
// If the process does not exist, including when it has exited and been
// reaped, the error wraps [ErrNoProcess] and so also matches [os.ErrNotExist].
func Read(pid int) (Stat, error) {
	pfs, err := procFS()
	if err != nil {
		return Stat{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	boot, err := bootTime()
	if err != nil {
		return Stat{}, fmt.Errorf("read process %d: boot time: %w", pid, err)
	}
	p, err := pfs.Proc(pid)
	if err != nil {
		return Stat{}, readError(pid, err)
	}
	ps, err := p.Stat()
	if err != nil {
		return Stat{}, readError(pid, err)
	}
	s := Stat{
		PID:     pid,
		CPUTime: time.Duration(ps.UTime+ps.STime) * tick,
		Started: boot.Add(time.Duration(ps.Starttime) * tick),
		FDs:     -1,
		At:      time.Now(),
		Stopped: ps.State == "T" || ps.State == "t",
	}
	if ps.RSS > 0 {
		s.RSS = uint64(ps.RSS) * uint64(os.Getpagesize())
	}
	if n, err := p.FileDescriptorsLen(); err == nil {
		s.FDs = n
	}
	return s, nil
}

// readError maps the ways a vanished process shows up to ErrNoProcess: the
// /proc/PID directory is gone (ENOENT), or the process was reaped between
// opening a file in it and reading it (ESRCH).
func readError(pid int, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("read process %d: %w", pid, ErrNoProcess)
	}
	return fmt.Errorf("read process %d: %w", pid, err)
}
