package workers

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Descriptors: every live worker costs the master a few open files (its
// pidfd, the read ends of its stdout and stderr, its notify socket, and
// with them its message channel and the bind supervisor's notification
// descriptor and listener duplicates), and a reload holds two generations
// at once. Without a look ahead, a reload of 2,048 workers under the
// common limit of 20,000 failed at worker 804 with "too many open files".
// So before the pool starts workers it makes sure the descriptors are
// there: it raises its own soft limit to the hard one (Go does at start),
// as root the hard one too, up to fs.nr_open, and otherwise fails the
// generation, or the scale, with the numbers and what to change.
//
// The limit is raised with prlimit(2), not syscall.Setrlimit: Go gives a
// child the limit this process started with unless syscall.Setrlimit was
// called, so workers keep theirs (a raised soft limit would break a
// select(2)-based program).

// descriptorsPerWorker is what one live worker holds open in the master.
func (p *Pool) descriptorsPerWorker() int {
	n := 4 // pidfd, stdout, stderr, notify socket
	if p.cfg.IPC != IPCOff {
		n++ // the message channel (only node commands under auto; counted anyway)
	}
	if p.intercepting && p.cfg.Sockets != nil {
		n += 1 + len(p.cfg.Sockets.Names()) // the seccomp notification and a duplicate per listener
	}
	return n
}

// spawnSlack covers what starting one worker holds for a moment (pipe
// write ends, the child's ends of the channels, the cgroup, the listener
// duplicates handed to it) and what the master opens meanwhile (control
// and metrics connections, /proc reads).
const spawnSlack = 64

// reserveDescriptors makes sure that adding n workers to those alive
// cannot run out of descriptors, raising the limit where it may; the
// error says what is missing.
func (p *Pool) reserveDescriptors(n int) error {
	open, err := openDescriptors()
	if err != nil {
		return nil // not knowing is no reason to refuse; the fork says EMFILE if it must
	}
	need := open + n*p.descriptorsPerWorker() + spawnSlack
	var lim unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		return nil
	}
	if uint64(need) <= lim.Cur {
		return nil
	}
	raised := lim
	raised.Cur = uint64(need)
	if raised.Cur > raised.Max {
		// Only a privileged master may raise the hard limit, and never
		// past fs.nr_open.
		if max, err := nrOpen(); err == nil && uint64(need) <= max {
			raised.Max = uint64(need)
		} else {
			raised.Cur = raised.Max
		}
	}
	if raised.Cur >= uint64(need) && unix.Prlimit(0, unix.RLIMIT_NOFILE, &raised, nil) == nil {
		p.logf(slog.LevelInfo, nil, "open files: raised the limit from %d to %d for %s", lim.Cur, raised.Cur, workersN(n))
		return nil
	}
	return fmt.Errorf("needs about %d open files in the master for %s and %d are free (the limit is %d, %d are open): "+
		"raise it (LimitNOFILE= in the unit, ulimit -n in a shell) or run fewer workers",
		n*p.descriptorsPerWorker()+spawnSlack, workersN(n), int(lim.Cur)-open, lim.Cur, open)
}

func openDescriptors() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	return len(names) - 1, nil // less the one reading
}

func nrOpen() (uint64, error) {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
