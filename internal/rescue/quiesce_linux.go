package rescue

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A worker that reads its connections with blocking reads, a thread per
// connection (Python's ThreadingHTTPServer, uWSGI's threads), cannot be
// frozen (see freeze), and one that its stop signal kills outright loses
// every request its threads are working on at that moment, and any that a
// thread reads between the hold and the signal. So before such a worker
// gets its stop signal, Hold stops it (SIGSTOP) at a moment when each of
// its held blocking connections has a thread waiting to read it: then no
// request is half done, and a thread that a signal interrupts in its read
// leaves what arrives unread for the master. If the moment does not come
// within QuiesceWait (threads busy with long requests), the worker gets
// its signal as it is, as without the rescue. The stop signal finds the
// worker stopped: a fatal one ends it there; a handled one waits, pending,
// and the loop continues the worker (SIGCONT) once it sees a signal
// pending (or ContinueAfter at the latest), so a worker that handles the
// signal drains as usual. The pool waits only for exits, so it does not
// see the stop.

// QuiesceWait bounds how long Hold looks for that moment. After the first
// QuiesceFree of it the clients' new requests are held back (see
// holdBack), so the threads come to rest as soon as the requests they are
// working on are answered; a worker that is not saturated is at rest at
// once, and its clients pay nothing.
const (
	QuiesceWait = 100 * time.Millisecond
	QuiesceFree = 10 * time.Millisecond
)

// ContinueAfter bounds how long a worker stays stopped when no signal
// comes (a descendant that its parent, the worker, signals later, or not
// at all): longer than the pool may delay a stop signal (MaxStopDelay).
const ContinueAfter = 100 * time.Millisecond

// quiesceRetry is how long a worker runs between two looks.
const quiesceRetry = time.Millisecond

// readSyscalls are the system calls a thread waits in to read a socket.
var readSyscalls = map[int64]bool{
	unix.SYS_READ: true, unix.SYS_READV: true, unix.SYS_RECVFROM: true, unix.SYS_RECVMSG: true, unix.SYS_PREAD64: true,
}

// quiesce stops pid at a moment when each of its blocking connections in
// conns has a thread waiting to read it, and reports whether it left pid
// stopped, how many blocking connections it has, and whether it held their
// clients' data back meanwhile.
func quiesce(pid int, conns []*heldConn) (stopped bool, blocking int, heldBack bool) {
	var fds []int
	var mine []*heldConn
	for _, h := range conns {
		if h.pid == pid && !h.frozen {
			fds = append(fds, h.theirFD)
			mine = append(mine, h)
		}
	}
	if len(fds) == 0 {
		return false, 0, false
	}
	// Once pid is stopped (or left as it is) the clients' data may come
	// in: their kernels send it again.
	defer func() {
		for _, h := range mine {
			h.letIn()
		}
	}()
	start := time.Now()
	deadline := start.Add(QuiesceWait)
	for {
		if !heldBack && time.Since(start) >= QuiesceFree {
			for _, h := range mine {
				h.holdBack()
			}
			heldBack = true
		}
		// What each connection's reader had read, then each one seen
		// waiting in its read (a sleeping thread in a read of it), then
		// the stop: a reader whose read returned with a request between
		// the first look and the moment every thread has stopped shows as
		// more read. (Looking again before they have all stopped would
		// miss a read in between: SIGSTOP takes effect when each thread
		// next leaves the kernel.)
		before, ok := consumed(mine)
		if ok && atRest(pid, fds) {
			if unix.Kill(pid, unix.SIGSTOP) != nil {
				return false, len(fds), heldBack
			}
			if allStopped(pid, deadline) {
				if after, ok := consumed(mine); ok && slices.Equal(before, after) {
					return true, len(fds), heldBack
				}
			}
			unix.Kill(pid, unix.SIGCONT)
		}
		if time.Now().After(deadline) {
			return false, len(fds), heldBack
		}
		time.Sleep(quiesceRetry)
	}
}

// consumed returns what the worker has read of each of conns.
func consumed(conns []*heldConn) ([]uint64, bool) {
	out := make([]uint64, len(conns))
	for i, h := range conns {
		c, err := readCounters(h.fd)
		if err != nil {
			return nil, false
		}
		out[i] = c.consumed
	}
	return out, true
}

// allStopped waits until every thread of pid is stopped.
func allStopped(pid int, deadline time.Time) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	for {
		tids, err := os.ReadDir(dir)
		if err != nil {
			return false
		}
		stopped := true
		for _, tid := range tids {
			b, err := os.ReadFile(dir + "/" + tid.Name() + "/stat")
			if err != nil {
				continue // gone meanwhile
			}
			// The state follows the command's closing parenthesis.
			i := bytes.LastIndexByte(b, ')')
			if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// atRest reports whether each descriptor of fds has a thread of pid
// waiting in a read of it (/proc/PID/task/TID/syscall: the number and the
// arguments of the system call a thread is blocked in).
func atRest(pid int, fds []int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tids, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	reading := make(map[int]bool)
	for _, tid := range tids {
		b, err := os.ReadFile(dir + "/" + tid.Name() + "/syscall")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue // "running" or "-1 …": not in a system call
		}
		nr, err1 := strconv.ParseInt(f[0], 10, 64)
		fd, err2 := strconv.ParseInt(strings.TrimPrefix(f[1], "0x"), 16, 64)
		if err1 == nil && err2 == nil && readSyscalls[nr] {
			reading[int(fd)] = true
		}
	}
	for _, fd := range fds {
		if !reading[fd] {
			return false
		}
	}
	return true
}

// ignoredPending are signals that say nothing of a stop: SIGCHLD from the
// worker's own children, SIGURG (Go's preemption), SIGWINCH, SIGCONT.
const ignoredPending = 1<<(unix.SIGCHLD-1) | 1<<(unix.SIGURG-1) | 1<<(unix.SIGWINCH-1) | 1<<(unix.SIGCONT-1)

// signalled reports whether stopped process pid has a signal pending for
// it (its stop signal, which a stopped process takes only once continued)
// or is gone: /proc/PID/status, ShdPnd (sent to the process) and SigPnd
// (to its main thread).
func signalled(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true // gone
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch name {
		case "State":
			if f := strings.Fields(val); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
				return true
			}
		case "ShdPnd", "SigPnd":
			mask, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
			if err == nil && mask&^ignoredPending != 0 {
				return true
			}
		}
	}
	return false
}
