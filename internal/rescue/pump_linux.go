package rescue

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Why splice(2) of our own rather than (*net.TCPConn).ReadFrom, which also
// splices through a pipe: ReadFrom takes a pipe from its pool for the
// whole copy, so each idle relay would keep two pipes (four descriptors)
// for its life. A pump here borrows a pipe only while bytes move through
// it, so a thousand idle relays hold two thousand socket descriptors and
// no pipe.

// pipe is a pipe pair that a pump moves bytes through; n bytes are in it.
type pipe struct {
	r, w int
	n    int
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipePool keeps empty pipes for the pumps; safe for concurrent use.
type pipePool struct {
	mu   sync.Mutex
	free []*pipe
	shut bool
}

// maxFreePipes bounds the empty pipes kept for reuse.
const maxFreePipes = 64

// spliceChunk is how much one splice(2) asks to move; the kernel moves at
// most what the pipe holds (16 pages by default).
const spliceChunk = 1 << 18

func (pp *pipePool) get() (*pipe, error) {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// put gives back a pipe; one that still holds bytes is closed.
func (pp *pipePool) put(p *pipe) {
	if p.n != 0 {
		p.close()
		return
	}
	pp.mu.Lock()
	if !pp.shut && len(pp.free) < maxFreePipes {
		pp.free = append(pp.free, p)
		pp.mu.Unlock()
		return
	}
	pp.mu.Unlock()
	p.close()
}

// close closes the pipes kept; later puts close theirs.
func (pp *pipePool) close() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.shut = true
	for _, p := range pp.free {
		p.close()
	}
	pp.free = nil
}

// errStopped is what a pump returns when its source's read deadline
// stopped it: everything it had read from the source was written on.
var errStopped = errors.New("rescue: relay stopped")

// pump copies src to dst with splice(2), without the bytes entering user
// space, until src ends (then it half-closes dst and returns nil), a read
// deadline on src stops it (errStopped, with nothing left in between), or
// either side fails (the error; the caller resets both).
func (pp *pipePool) pump(src, dst *net.TCPConn) (int64, error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		var p *pipe
		var n int64
		var serr error
		err := srcRC.Read(func(fd uintptr) bool {
			if p == nil {
				if p, serr = pp.get(); serr != nil {
					return true
				}
			}
			for {
				n, serr = unix.Splice(int(fd), nil, p.w, nil, spliceChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				if serr != unix.EINTR {
					break
				}
			}
			if serr == unix.EAGAIN {
				// Nothing to read: wait without holding a pipe.
				pp.put(p)
				p = nil
				return false
			}
			return true
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			if p != nil {
				pp.put(p)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return total, errStopped
			}
			return total, err
		}
		if n == 0 {
			pp.put(p)
			// The source's end: pass it on, the other direction goes on.
			dst.CloseWrite()
			return total, nil
		}
		p.n = int(n)
		if err := flush(p, dstRC); err != nil {
			p.close()
			return total, err
		}
		total += n
		pp.put(p)
	}
}

// flush writes what p holds to the socket behind dst.
func flush(p *pipe, dst syscall.RawConn) error {
	var serr error
	err := dst.Write(func(fd uintptr) bool {
		for p.n > 0 {
			k, err := unix.Splice(p.r, nil, int(fd), nil, p.n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // the socket's send buffer is full
			case err != nil:
				serr = err
				return true
			}
			p.n -= int(k)
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

// resetConn closes c with a reset rather than a FIN (SO_LINGER {on, 0},
// socket(7)), so that its peer fails at once.
func resetConn(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// resetFD is resetConn for a bare descriptor.
func resetFD(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// queues reads a connection's unread (SIOCINQ) and unacknowledged or
// unsent (SIOCOUTQ) byte counts.
func queues(fd int) (in, out int, err error) {
	if in, err = unix.IoctlGetInt(fd, unix.SIOCINQ); err != nil {
		return 0, 0, fmt.Errorf("SIOCINQ: %w", err)
	}
	if out, err = unix.IoctlGetInt(fd, unix.SIOCOUTQ); err != nil {
		return 0, 0, fmt.Errorf("SIOCOUTQ: %w", err)
	}
	return in, out, nil
}

// connFD runs f on c's descriptor.
func connFD(c *net.TCPConn, f func(fd int)) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

// peek returns up to max bytes of what waits unread on fd, without
// consuming them.
func peek(fd int, max int) ([]byte, error) {
	b := make([]byte, max)
	for {
		n, _, err := unix.Recvfrom(fd, b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return nil, nil
		case err != nil:
			return nil, err
		}
		return b[:n], nil
	}
}

// pollEvery is how often a wait on a connection's queues looks again.
const pollEvery = 500 * time.Microsecond

// waitFor polls cond until it holds, fails, or nothing has changed for
// stall (progress, when given, reports a number that grows while the wait
// is worth going on). It returns whether cond held.
func waitFor(stall time.Duration, cond func() (bool, error), progress func() int64) bool {
	last := int64(-1)
	deadline := time.Now().Add(stall)
	for {
		ok, err := cond()
		if err != nil {
			return false
		}
		if ok {
			return true
		}
		if progress != nil {
			if p := progress(); p != last {
				last = p
				deadline = time.Now().Add(stall)
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}
