package rescue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/hotcluster/hotcluster/internal/sockdiag"
	"github.com/hotcluster/hotcluster/internal/sockowner"
	"golang.org/x/sys/unix"
)

// heldConn is the master's duplicate of a connection that a worker held at
// its stop signal, taken with pidfd_getfd(2). It refers to the worker's own
// open file description, so nothing here changes its flags (O_NONBLOCK is
// the worker's) until the worker has let go of it.
type heldConn struct {
	fd      int
	pid     int // the process it was taken from
	theirFD int // its number there
	ino     uint64
	l       *Listener
	// remote is the client's address; for the worker's end of one of the
	// master's relays, the relay's upstream address.
	remote netip.AddrPort
	at     time.Time
	// What the worker had read and written at the hold, and whether it
	// was then working on a request it had read.
	consumed0, written0 uint64
	inflight0           bool
	// deadline for the rest of a request line that has begun to arrive;
	// idleUntil for the next request of a client (see awaitNext).
	deadline, idleUntil time.Time
	batch               *holdBatch
	// frozen: the master raised the socket's receive low-water mark at
	// the hold (see freeze); waitingSince is when a request was first seen
	// waiting while the worker still held it.
	frozen       bool
	waitingSince time.Time
	// heldBack: quiesce holds the client's new data back (see holdBack).
	heldBack bool
}

// The receive low-water mark a hold sets: the kernel caps it at half the
// largest receive buffer, far above any request that waits.
const frozenLowat = 1 << 30

// ThawAfter bounds how long a request may wait unread in a frozen
// connection that its worker still holds: the worker is still serving it
// (a server that keeps answering keep-alive requests for a while after its
// stop signal), so it gets the request, as without the rescue.
const ThawAfter = 100 * time.Millisecond

// freeze keeps a worker that waits for readiness (epoll, poll: every event
// loop server) from seeing a request that arrives after its stop signal:
// with the low-water mark above what can arrive, the socket never polls
// readable, so the worker closes the connection as idle with the request
// unread, and the master relays it, instead of reading it and then closing
// (Go's http.Server.Shutdown closes a connection whose request it has read
// but not yet marked active; its background read takes one byte). Only
// non-blocking sockets are frozen: a blocking read waits for the mark and
// would consume the request and hang. Reads that are already underway and
// reads without a poll first see no change.
func (h *heldConn) freeze() {
	fl, err := unix.FcntlInt(uintptr(h.fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		return
	}
	if unix.SetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, frozenLowat) == nil {
		h.frozen = true
	}
}

// thaw gives the socket its usual low-water mark back; the kernel wakes a
// poller if a request is waiting.
func (h *heldConn) thaw() {
	if h.frozen {
		unix.SetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
		h.frozen = false
	}
}

// thawIfWaited thaws h, which its worker still holds, once a request has
// waited in it for ThawAfter.
func (h *heldConn) thawIfWaited(now time.Time) {
	if !h.frozen {
		return
	}
	in, _, err := queues(h.fd)
	switch {
	case err != nil || in == 0:
		h.waitingSince = time.Time{}
	case h.waitingSince.IsZero():
		h.waitingSince = now
	case now.Sub(h.waitingSince) >= ThawAfter:
		h.thaw()
	}
}

// counters are what the kernel says of a connection at one time.
type counters struct {
	state     sockdiag.State
	inq, outq int
	// consumed: bytes the worker read; written: bytes it wrote (sent or
	// still queued).
	consumed, written  uint64
	lastRecv, lastSent uint32 // ms since the last data in, out
}

func readCounters(fd int) (counters, error) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return counters{}, fmt.Errorf("TCP_INFO: %w", err)
	}
	in, out, err := queues(fd)
	if err != nil {
		return counters{}, err
	}
	c := counters{state: sockdiag.State(info.State), inq: in, outq: out, lastRecv: info.Last_data_recv, lastSent: info.Last_data_sent}
	if info.Bytes_received >= uint64(in) {
		c.consumed = info.Bytes_received - uint64(in)
	}
	c.written = info.Bytes_acked + uint64(out)
	return c, nil
}

// sample records what the worker had read and written, and checks that fd
// is still the socket the hold looked for (the worker may have closed and
// reused the number meanwhile).
func (h *heldConn) sample() bool {
	var st unix.Stat_t
	if unix.Fstat(h.fd, &st) != nil || st.Ino != h.ino {
		return false
	}
	c, err := readCounters(h.fd)
	if err != nil {
		return false
	}
	h.consumed0, h.written0 = c.consumed, c.written
	// Data came in more recently than any went out, and the worker read
	// it: it had a request in hand.
	h.inflight0 = c.inq == 0 && c.consumed > 0 && c.lastRecv < c.lastSent
	return true
}

// unanswered reports whether the worker read bytes it never answered: it
// wrote nothing since the hold, and read something since, or had a request
// in hand at the hold, or has read and never written at all. The client
// then waits for an answer that will not come, and the connection is not
// at a request boundary whatever its unread bytes look like.
func (h *heldConn) unanswered(c counters) bool {
	if c.written != h.written0 {
		return false
	}
	return c.consumed > h.consumed0 || h.inflight0 || (c.consumed > 0 && c.written == 0)
}

// NextRequestWait bounds how long after its last answer a connection that
// its worker answered after the hold and then closed is kept open for its
// client's next request. A server in its drain need not say "Connection:
// close" in that answer (Go's http.Server does not), so a busy client's
// next request may be on its way, and on a loaded machine a client takes
// tens of milliseconds to send it. Against that, an answer delimited by
// the connection's close (HTTP/1.0 without keep-alive, a body with neither
// a length nor chunks) ends for its client only at the close, this much
// later than the worker meant; HTTP/1.1 clients and servers frame their
// bodies, so that is rare, and a late end is not a failure.
const NextRequestWait = 250 * time.Millisecond

// IdleWait bounds how long a connection that its worker closed as idle,
// having answered nothing since the hold, is kept open for its client's
// next request: a keep-alive client sends it whenever it likes, and
// closing it at once would fail a request on its way, as the worker's own
// close does. Past IdleWait the client is idle and the close is a
// keep-alive server's ordinary idle close.
const IdleWait = 2 * time.Second

// awaitNext reports whether h, let go of by its worker with nothing unread
// (c), should wait for its client's next request a little longer.
func (h *heldConn) awaitNext(c counters, now time.Time) bool {
	if c.state != sockdiag.Established {
		return false
	}
	if h.idleUntil.IsZero() {
		if c.written == h.written0 {
			h.idleUntil = now.Add(IdleWait)
		} else {
			h.idleUntil = now.Add(NextRequestWait - time.Duration(c.lastSent)*time.Millisecond)
		}
	}
	return now.Before(h.idleUntil)
}

// holdBatch is what one Hold took: the connections of one worker (and its
// descendants), and how they ended, for one log line.
type holdBatch struct {
	pid   int
	conns []*heldConn
	// stopped: the holders quiesce left stopped, for the loop to continue.
	stopped                                    []int
	counts                                     map[int]int64 // each holder's descriptor count at the hold
	n                                          int
	relayed, redialed, closed, resets, dropped int
}

// candidate is a connection on a listener, as the kernel lists it.
type candidate struct {
	l      *Listener
	remote netip.AddrPort
}

// maxDescendants bounds the processes below a worker that a hold looks
// into when the worker itself holds none of its listener's connections.
const maxDescendants = 64

// Hold takes a duplicate of every connection that process pid, a worker
// about to get its stop signal, holds on a listener in HTTP mode (or, if
// it holds none, its descendants do): the worker's close of an idle
// keep-alive connection then sends no FIN, and the master decides once the
// worker has let go of it (see Run). It is called on the pool's goroutine
// just before the signal, so it does only bounded work: one socket
// diagnostics dump per listening port, one look at the worker's descriptor
// table, one pidfd_getfd(2) per connection, up to Config.Max. Without
// ptrace rights over the worker (Yama's ptrace_scope above 1, a worker
// that is not dumpable, another user's worker without CAP_SYS_PTRACE) or
// on a kernel older than 5.6 it logs once why, and holds nothing from
// then on. It returns how long the stop signal should wait (FreezeSettle,
// or 0).
func (rs *Rescuer) Hold(pid int, opts HoldOptions) time.Duration {
	if len(rs.http) == 0 || rs.disabled.Load() != nil || !rs.cfg.Armed() {
		return 0
	}
	cands := rs.candidates()
	if len(cands) == 0 {
		return 0
	}
	found := make(map[int]map[uint64]int) // holder -> inode -> descriptor
	if m := match(pid, cands); len(m) > 0 {
		found[pid] = m
	} else {
		for _, d := range sockowner.Descendants(pid, maxDescendants) {
			if m := match(d, cands); len(m) > 0 {
				found[d] = m
			}
		}
	}
	if len(found) == 0 {
		return 0
	}
	b := &holdBatch{pid: pid, counts: make(map[int]int64)}
	over := 0
	for p, m := range found {
		n, stop := rs.take(b, p, m, cands, opts)
		over += n
		if stop {
			break
		}
		b.counts[p], _ = fdCount(p)
		stopped, blocking, heldBack := false, 0, false
		if !opts.DrainsKeepAlive {
			stopped, blocking, heldBack = quiesce(p, b.conns)
		}
		if blocking > 0 {
			rs.log.Debug(fmt.Sprintf("rescue: pid %d reads %d held connections with blocking reads: stopped at rest: %v; their new requests held back meanwhile: %v", p, blocking, stopped, heldBack), "pid", p)
		}
		if stopped {
			// What the threads did until they stopped counts as done
			// before the hold.
			for _, h := range b.conns {
				if h.pid == p {
					h.sample()
				}
			}
			b.stopped = append(b.stopped, p)
		}
	}
	if over > 0 {
		rs.atMax(fmt.Sprintf("%d connections of pid %d are left to it", over, pid))
	}
	if len(b.conns) == 0 {
		return 0
	}
	b.n = len(b.conns)
	rs.nHeld.Add(int64(b.n))
	rs.log.Debug(fmt.Sprintf("rescue: holding %d connections of pid %d at its stop signal", b.n, pid), "pid", pid)
	select {
	case rs.holdC <- b:
	case <-rs.done:
		for _, h := range b.conns {
			unix.Close(h.fd)
			rs.release()
		}
		rs.nHeld.Add(-int64(b.n))
		return 0
	}
	if len(b.stopped) > 0 {
		return 0 // stopped at rest: the signal must come now
	}
	for _, h := range b.conns {
		if h.frozen {
			return FreezeSettle
		}
	}
	return 0
}

// FreezeSettle is how long Hold asks the pool to wait, after freezing a
// worker's connections, before its stop signal: a request the worker read
// just before the freeze is then marked active before the signal comes
// (Go's Shutdown closes a connection whose request it has read but not yet
// marked active, and that request's bytes are gone), while one that
// arrives after the freeze stays unread for the master.
const FreezeSettle = 2 * time.Millisecond

// take duplicates the connections m of process p into b. It returns how
// many did not fit under Config.Max, and stop when holding is impossible
// from now on.
func (rs *Rescuer) take(b *holdBatch, p int, m map[uint64]int, cands map[uint64]candidate, opts HoldOptions) (over int, stop bool) {
	pidfd, err := unix.PidfdOpen(p, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			rs.disable("the kernel has no pidfd_open(2) (Linux 5.3 or later needed)")
			return 0, true
		}
		return 0, false // gone meanwhile
	}
	defer unix.Close(pidfd)
	now := time.Now()
	for ino, theirFD := range m {
		if !rs.reserve() {
			over++
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, theirFD, 0)
		if err != nil {
			rs.release()
			switch {
			case errors.Is(err, unix.ENOSYS):
				rs.disable("the kernel has no pidfd_getfd(2) (Linux 5.6 or later needed)")
				return over, true
			case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
				rs.disable(fmt.Sprintf("the master may not take the workers' connections (pidfd_getfd: %v): it needs ptrace rights over them, "+
					"which a parent has unless /proc/sys/kernel/yama/ptrace_scope is 2 or 3, the worker is not dumpable, or it runs as another user without CAP_SYS_PTRACE", err))
				return over, true
			}
			continue // closed meanwhile
		}
		h := &heldConn{fd: fd, pid: p, theirFD: theirFD, ino: ino, l: cands[ino].l, remote: cands[ino].remote, at: now, batch: b}
		if !h.sample() {
			unix.Close(fd)
			rs.release()
			continue
		}
		if !opts.DrainsKeepAlive {
			h.freeze()
		}
		b.conns = append(b.conns, h)
	}
	return over, false
}

// disable turns keep-alive holding off for good, saying why once.
func (rs *Rescuer) disable(why string) {
	if rs.disabled.CompareAndSwap(nil, &why) {
		rs.log.Warn("rescue: keep-alive connections are left to the old workers at a turnover, as without hotcluster's rescue: " + why)
	}
}

// candidates lists the connections on the listeners in HTTP mode, by inode.
func (rs *Rescuer) candidates() map[uint64]candidate {
	out := make(map[uint64]candidate)
	seen := make(map[uint16]bool)
	for _, l := range rs.http {
		port := l.Addr.Port()
		if seen[port] {
			continue
		}
		seen[port] = true
		conns, err := sockdiag.TCP(port, sockdiag.States(sockdiag.Established, sockdiag.CloseWait))
		if err != nil {
			continue
		}
		for _, c := range conns {
			if c.Inode == 0 {
				continue
			}
			for _, l2 := range rs.http {
				if l2.owns(c.Local) {
					out[uint64(c.Inode)] = candidate{l: l2, remote: c.Remote}
					break
				}
			}
		}
	}
	return out
}

// match returns the candidates process pid holds: inode -> descriptor.
func match(pid int, cands map[uint64]candidate) map[uint64]int {
	socks, err := sockowner.Sockets(pid)
	if err != nil {
		return nil
	}
	m := make(map[uint64]int)
	for ino, fd := range socks {
		if _, ok := cands[ino]; ok {
			m[ino] = fd
		}
	}
	return m
}

// proc is a process the loop watches for the connections it holds.
type proc struct {
	pid   int
	count int64     // its descriptor count at the last look
	full  time.Time // its last look at every connection
	// thawed: its last look at the waiting requests of frozen connections
	thawed time.Time
	conns  []*heldConn
}

// How the loop watches the holders. With descriptor counts (Linux 6.2+:
// stat(2) of /proc/PID/fd gives st_size = open descriptors), a look is one
// stat per holder per tick, and each connection is checked only when its
// holder's count changed, or every fullLook as a backstop for a close and
// an open between two ticks; so a close is seen within a tick, at a cost
// that does not grow with the connections held. Without counts every
// connection is checked every slowTick.
const (
	tick     = 2 * time.Millisecond
	slowTick = 10 * time.Millisecond
	fullLook = 50 * time.Millisecond
	// thawLook: how often frozen connections are checked for a request
	// that waits (one ioctl each), between full looks.
	thawLook = 5 * time.Millisecond
)

func (rs *Rescuer) tickEvery() time.Duration {
	if rs.fdCounts {
		return tick
	}
	return slowTick
}

// fdCount returns the number of pid's open descriptors (0 on kernels that
// do not count, -1 when it cannot be read), and whether pid is gone.
func fdCount(pid int) (int64, bool) {
	var st unix.Stat_t
	err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/fd", &st)
	switch {
	case err == nil:
		return st.Size, false
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return -1, true
	}
	return -1, false
}

// addHold starts watching what a hold took.
func (rs *Rescuer) addHold(b *holdBatch) {
	now := time.Now()
	for _, pid := range b.stopped {
		rs.stoppedAt[pid] = now
	}
	for _, h := range b.conns {
		p := rs.procs[h.pid]
		if p == nil {
			p = &proc{pid: h.pid, count: b.counts[h.pid], full: now}
			rs.procs[h.pid] = p
		}
		p.conns = append(p.conns, h)
	}
}

// tick looks at every holder, settles what they let go of, and decides
// again for connections waiting for a request line. final: the master is
// on its way out; nothing is kept or waited for.
func (rs *Rescuer) tick(final bool) {
	now := time.Now()
	for pid, at := range rs.stoppedAt {
		// The pool sends the stop signal as soon as Hold returns, but its
		// goroutine may run after this one: a worker continued before its
		// signal would read what came meanwhile and die with it.
		if final || now.Sub(at) >= ContinueAfter || signalled(pid) {
			unix.Kill(pid, unix.SIGCONT)
			delete(rs.stoppedAt, pid)
		}
	}
	for pid, p := range rs.procs {
		n, gone := fdCount(pid)
		if !final && !gone && rs.fdCounts && n == p.count && now.Sub(p.full) < fullLook {
			if now.Sub(p.thawed) >= thawLook {
				p.thawed = now
				for _, h := range p.conns {
					h.thawIfWaited(now)
				}
			}
			continue
		}
		p.count, p.full = n, now
		keep := p.conns[:0]
		for _, h := range p.conns {
			if !gone && rs.stillHeld(h) {
				if final || now.Sub(h.at) > rs.cfg.HoldTimeout {
					rs.drop(h)
					continue
				}
				h.thawIfWaited(now)
				keep = append(keep, h)
				continue
			}
			rs.settle(h, final)
		}
		p.conns = keep
		if len(keep) == 0 {
			delete(rs.procs, pid)
		}
	}
	if len(rs.pending) > 0 {
		keep := rs.pending[:0]
		for _, h := range rs.pending {
			if !rs.decide(h, final) {
				keep = append(keep, h)
			}
		}
		rs.pending = keep
	}
}

const kcmpFile = 0 // KCMP_FILE, include/uapi/linux/kcmp.h

// stillHeld reports whether h's holder still has it open under its number:
// kcmp(2) compares the two descriptors' open files; where kcmp is missing
// or refused, /proc/PID/fd says which socket the number refers to.
func (rs *Rescuer) stillHeld(h *heldConn) bool {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(rs.self), uintptr(h.pid), kcmpFile, uintptr(h.fd), uintptr(h.theirFD), 0)
	switch e {
	case 0:
		return r == 0
	case unix.ENOSYS, unix.EPERM, unix.EACCES:
		link, err := os.Readlink("/proc/" + strconv.Itoa(h.pid) + "/fd/" + strconv.Itoa(h.theirFD))
		return err == nil && link == "socket:["+strconv.FormatUint(h.ino, 10)+"]"
	}
	return false // EBADF: closed; ESRCH: gone
}

// settle handles a connection its holder let go of: the worker's end of
// one of the master's relays goes to that relay, anything else is decided
// here.
func (rs *Rescuer) settle(h *heldConn, final bool) {
	if r := rs.byUp[h.remote]; r != nil {
		select {
		case r.cmds <- relayCmd{redial: h}:
			// The relay owns h from now on, within its own slot.
			rs.nHeld.Add(-1)
			rs.release()
			h.batch.redialed++
			rs.batchDone(h.batch)
			return
		case <-r.done:
		default:
		}
	}
	if !rs.decide(h, final) {
		rs.pending = append(rs.pending, h)
	}
}

// outcome of a decision for a held connection.
type outcome int

const (
	outClosed outcome = iota
	outReset
)

// decide handles a connection whose worker let go of it, and reports
// whether it is done (false: it waits for the rest of a request line):
//
//   - the worker read bytes it never answered: reset;
//   - the client sent nothing since its last answer: closed, as the
//     worker meant to, and the client sees a normal close;
//   - its next request waits unread and begins at a request boundary (an
//     HTTP/1.x request line): relayed to the serving generation;
//   - anything else (a TLS record, HTTP/2, the rest of a request the
//     worker read part of), or no generation to relay to: reset, which is
//     what the worker's own close with unread bytes would have done.
func (rs *Rescuer) decide(h *heldConn, final bool) bool {
	c, err := readCounters(h.fd)
	switch {
	case err != nil:
		return rs.settleNow(h, outClosed)
	case !answerable(c.state):
		// The worker ended its side (shutdown) before it let go.
		if c.inq > 0 {
			return rs.settleNow(h, outReset)
		}
		return rs.settleNow(h, outClosed)
	case h.unanswered(c):
		return rs.settleNow(h, outReset)
	case c.inq == 0:
		if !final && h.awaitNext(c, time.Now()) {
			return false
		}
		return rs.settleNow(h, outClosed)
	case !rs.cfg.Armed():
		return rs.settleNow(h, outReset)
	}
	b, err := peek(h.fd, peekSize)
	if err != nil {
		return rs.settleNow(h, outReset)
	}
	switch requestLine(b) {
	case request:
		rs.relayHeld(h)
		return true
	case partial:
		now := time.Now()
		if final || c.state == sockdiag.CloseWait || len(b) >= peekSize || !h.deadline.IsZero() && now.After(h.deadline) {
			return rs.settleNow(h, outReset)
		}
		if h.deadline.IsZero() {
			h.deadline = now.Add(RequestWait)
		}
		return false
	}
	return rs.settleNow(h, outReset)
}

// settleNow closes or resets h and counts it; it returns true.
func (rs *Rescuer) settleNow(h *heldConn, o outcome) bool {
	if o == outReset {
		resetFD(h.fd)
		rs.resets.Add(1)
		h.batch.resets++
	} else {
		// The worker's last bytes still go out, then the FIN.
		unix.Close(h.fd)
		rs.closed.Add(1)
		h.batch.closed++
	}
	rs.nHeld.Add(-1)
	rs.release()
	rs.overMax.Store(false)
	rs.batchDone(h.batch)
	return true
}

// drop closes the master's duplicate of a connection its worker still
// holds: the worker keeps it, as without the rescue.
func (rs *Rescuer) drop(h *heldConn) {
	h.thaw()
	unix.Close(h.fd)
	rs.nHeld.Add(-1)
	rs.release()
	h.batch.dropped++
	rs.batchDone(h.batch)
}

// relayHeld relays a connection its worker let go of to the serving
// generation; its slot under Config.Max goes to the relay.
func (rs *Rescuer) relayHeld(h *heldConn) {
	rs.nHeld.Add(-1)
	c, err := adoptFD(h.fd)
	if err != nil {
		rs.release()
		rs.resets.Add(1)
		h.batch.resets++
		rs.batchDone(h.batch)
		return
	}
	h.batch.relayed++
	rs.start(newRelay(rs, h.l, kindKeepAlive, c, nil))
	rs.batchDone(h.batch)
}

// batchDone logs a hold's one line once each of its connections is
// settled.
func (rs *Rescuer) batchDone(b *holdBatch) {
	if b.relayed+b.redialed+b.closed+b.resets+b.dropped < b.n {
		return
	}
	level := slog.LevelDebug
	if b.relayed+b.redialed+b.resets > 0 {
		level = slog.LevelInfo
	}
	rs.log.Log(context.Background(), level, fmt.Sprintf("rescue: the %d connections pid %d held at its stop signal: %d relayed to the serving generation, %d relays went on, %d closed, %d reset, %d left to it",
		b.n, b.pid, b.relayed, b.redialed, b.closed, b.resets, b.dropped), "pid", b.pid)
}
