package rescue

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/hotcluster/hotcluster/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// relayKind says where a relay's client connection came from.
type relayKind int

const (
	// kindQueued: accepted by the master from a retired socket's queue.
	kindQueued relayKind = iota
	// kindKeepAlive: a keep-alive connection its worker let go of with
	// the client's next request unread.
	kindKeepAlive
	// kindAdopted: taken over from a previous master.
	kindAdopted
)

// How a relay ended, for the counters.
type endHow int

const (
	endDone   endHow = iota // both sides ended, or a bound was reached
	endReset                // a side failed, or a rescue found no boundary: both reset
	endClosed               // its upstream worker let go at a boundary: the client sees a close
	endHanded               // given to a successor master
)

// Bounds of a relay's own waits.
const (
	dialTimeout = 5 * time.Second
	// flushWait bounds how long stopping a direction waits for bytes
	// already read to be written on (a peer that does not read).
	flushWait = 5 * time.Second
	// queueStall bounds, during a redial, a wait on the kernel's queues
	// that makes no progress.
	queueStall = 2 * time.Second
)

// relay carries a client connection to an upstream connection on the same
// listener (which the selector gives to the serving generation) for the
// connection's life: bytes move in the kernel (splice), each direction's end
// is passed on as a half-close, a failure on either side resets both. Its
// goroutine (run) is the only one that touches it once started; the
// rescuer's loop talks to it through cmds.
type relay struct {
	rs     *Rescuer
	l      *Listener
	kind   relayKind
	client *net.TCPConn
	up     *net.TCPConn // nil until dialled
	// ended directions, for a relay taken over with one already done.
	c2uEnded, u2cEnded bool
	burst              *burst // for kindQueued: the queue it came from
	// oneShot: the relay carries one request and ends (see oneshot.go).
	oneShot bool
	cmds    chan relayCmd
	done    chan struct{}
}

// relayCmd is one request of the loop to a relay.
type relayCmd struct {
	// redial: h is the worker's end of the relay's upstream, which its
	// worker let go of: go on to a new upstream at the request boundary,
	// or end the relay as the worker ended the connection.
	redial *heldConn
	// suspend: stop moving bytes and give the connections back, for a
	// successor master.
	suspend chan<- *suspended
	// quit: close both sides.
	quit bool
}

// suspended is a relay stopped with nothing in flight in the master.
type suspended struct {
	r                  *relay
	client, up         *net.TCPConn
	c2uEnded, u2cEnded bool
}

func newRelay(rs *Rescuer, l *Listener, kind relayKind, client, up *net.TCPConn) *relay {
	return &relay{rs: rs, l: l, kind: kind, client: client, up: up, cmds: make(chan relayCmd, 2), done: make(chan struct{})}
}

// run dials the upstream if needed, then relays until the end.
func (r *relay) run() {
	defer close(r.done)
	if r.up == nil {
		up, err := dialUp(r.l)
		if err != nil {
			resetConn(r.client)
			r.rs.post(relayEvent{r: r, kind: evUp, err: err})
			r.rs.post(relayEvent{r: r, kind: evEnded, how: endReset})
			return
		}
		r.up = up
	}
	if r.kind == kindKeepAlive {
		ok, err := r.askClose()
		if err != nil {
			r.resetAll()
			r.rs.post(relayEvent{r: r, kind: evUp, up: localAddr(r.up)})
			r.rs.post(relayEvent{r: r, kind: evEnded, how: endReset})
			return
		}
		r.oneShot = ok
	}
	r.rs.post(relayEvent{r: r, kind: evUp, up: localAddr(r.up)})
	how := r.serve()
	r.rs.post(relayEvent{r: r, kind: evEnded, how: how})
}

// askClose passes the client's request line on with closeHeader after it,
// when the relay may end after this request (oneShotRequest); it reports
// whether it did.
func (r *relay) askClose() (bool, error) {
	var b []byte
	var perr error
	if err := connFD(r.client, func(fd int) { b, perr = peek(fd, peekSize) }); err != nil {
		return false, err
	}
	if perr != nil {
		return false, perr
	}
	line, ok := oneShotRequest(b)
	if !ok {
		return false, nil
	}
	buf := make([]byte, line+len(closeHeader))
	if _, err := io.ReadFull(r.client, buf[:line]); err != nil {
		return false, err
	}
	copy(buf[line:], closeHeader)
	_, err := r.up.Write(buf)
	return err == nil, err
}

func dialUp(l *Listener) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", l.dialAddr(), dialTimeout)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func localAddr(c *net.TCPConn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// dir is one direction of a relay and the pump goroutine moving it, which
// the relay's goroutine starts and always waits for.
type dir struct {
	src, dst *net.TCPConn
	// pre, when set, runs before the pump, on its goroutine (closeAnswer);
	// ended: src ended, and what came was passed on.
	pre     func() (ended bool, err error)
	res     chan error
	running bool
	// ended: src reached its end, and dst's write side is closed.
	ended bool
}

func (d *dir) start(pp *pipePool) {
	d.res = make(chan error, 1)
	d.running = true
	pre := d.pre
	d.pre = nil
	go func(res chan error) {
		if pre != nil {
			ended, err := pre()
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				res <- errStopped
				return
			case err != nil:
				res <- err
				return
			case ended:
				d.dst.CloseWrite()
				res <- nil
				return
			}
		}
		_, err := pp.pump(d.src, d.dst)
		res <- err
	}(d.res)
}

// finished records the pump's result; it reports whether the direction
// is still sound (ended or stopped, not failed).
func (d *dir) finished(err error) bool {
	d.running = false
	if err == nil {
		d.ended = true
	}
	return err == nil || errors.Is(err, errStopped)
}

// stop stops the pump with everything it read written on, and reports
// whether the direction is sound. Bounded by flushWait for a peer that
// does not read.
func (d *dir) stop() bool {
	if !d.running {
		return true
	}
	d.src.SetReadDeadline(time.Unix(1, 0))
	var err error
	t := time.NewTimer(flushWait)
	select {
	case err = <-d.res:
	case <-t.C:
		d.dst.SetWriteDeadline(time.Unix(1, 0))
		err = <-d.res
		d.dst.SetWriteDeadline(time.Time{})
	}
	t.Stop()
	d.src.SetReadDeadline(time.Time{})
	return d.finished(err)
}

// serve relays until both directions ended, either failed, or the loop
// asks otherwise.
func (r *relay) serve() endHow {
	pp := &r.rs.pipes
	c2u := &dir{src: r.client, dst: r.up, ended: r.c2uEnded}
	u2c := &dir{src: r.up, dst: r.client, ended: r.u2cEnded}
	if r.oneShot {
		u2c.pre = func() (bool, error) { return closeAnswer(r.up, r.client) }
	}
	if !c2u.ended {
		c2u.start(pp)
	}
	if !u2c.ended {
		u2c.start(pp)
	}
	halt := func() {
		c2u.stop()
		u2c.stop()
	}
	var half *time.Timer
	defer func() {
		if half != nil {
			half.Stop()
		}
	}()
	for {
		if c2u.ended && u2c.ended {
			r.closeAll()
			return endDone
		}
		var halfC <-chan time.Time
		if c2u.ended || u2c.ended {
			if half == nil {
				half = time.NewTimer(HalfCloseTimeout)
			}
			halfC = half.C
		}
		select {
		case err := <-c2u.res:
			if !c2u.finished(err) {
				halt()
				r.resetAll()
				return endReset
			}
		case err := <-u2c.res:
			if !u2c.finished(err) {
				halt()
				r.resetAll()
				return endReset
			}
		case <-halfC:
			halt()
			r.closeAll()
			return endDone
		case cmd := <-r.cmds:
			switch {
			case cmd.quit:
				halt()
				r.closeAll()
				return endDone
			case cmd.suspend != nil:
				ok1, ok2 := c2u.stop(), u2c.stop()
				if !ok1 || !ok2 {
					r.resetAll()
					cmd.suspend <- nil
					return endReset
				}
				cmd.suspend <- &suspended{r: r, client: r.client, up: r.up, c2uEnded: c2u.ended, u2cEnded: u2c.ended}
				return endHanded
			case cmd.redial != nil:
				if how, ok := r.redial(cmd.redial, &c2u, &u2c); !ok {
					return how
				}
			}
		}
	}
}

func (r *relay) closeAll() {
	r.client.Close()
	r.up.Close()
}

func (r *relay) resetAll() {
	resetConn(r.client)
	resetConn(r.up)
}

// redial handles the worker's end of this relay's upstream, h, once its
// worker (drained by a reload) let go of it: exactly as for a connection
// the master held for its client (see decide), with what the client sent
// through the relay counted in, the relay either goes on to a new
// upstream at the request boundary, or ends: closed if the client had sent
// nothing since its last answer, reset otherwise. It reports false when
// the relay ended, and how.
func (r *relay) redial(h *heldConn, c2u, u2c **dir) (endHow, bool) {
	pp := &r.rs.pipes
	hfd := h.fd
	defer func() {
		if hfd >= 0 {
			unix.Close(hfd)
		}
	}()
	end := func(how endHow) (endHow, bool) {
		(*c2u).stop()
		(*u2c).stop()
		if how == endReset {
			r.resetAll()
		} else {
			r.closeAll()
		}
		return how, false
	}
	// What the client sent through the relay goes on to h's receive queue,
	// where the decision looks for it; what it sends from now on waits in
	// its own connection.
	if !(*c2u).stop() {
		return end(endReset)
	}
	var upFD, clientFD int
	connFD(r.up, func(fd int) { upFD = fd })
	connFD(r.client, func(fd int) { clientFD = fd })
	waitFor(queueStall/4, func() (bool, error) {
		_, out, err := queues(upFD)
		return out == 0, err
	}, nil)

	c, err := readCounters(hfd)
	if err != nil || h.unanswered(c) {
		return end(endReset)
	}
	pend, err := peek(hfd, peekSize)
	if err != nil {
		return end(endReset)
	}
	more := func() []byte {
		if (*c2u).ended {
			return pend
		}
		b, _ := peek(clientFD, peekSize-len(pend))
		return append(append([]byte(nil), pend...), b...)
	}
	all := more()
	// Deliver what the worker wrote last before anything else reaches
	// the client. h's descriptor is hfd until it is adopted as hconn.
	var hconn *net.TCPConn
	hOut := func() (out int, err error) {
		if hconn == nil {
			_, out, err = queues(hfd)
			return out, err
		}
		if cerr := connFD(hconn, func(fd int) { _, out, err = queues(fd) }); cerr != nil {
			return 0, cerr
		}
		return out, err
	}
	delivered := func() bool {
		return waitFor(queueStall, func() (bool, error) {
			hout, err := hOut()
			if err != nil {
				return false, err
			}
			uin, _, err := queues(upFD)
			return hout == 0 && uin == 0, err
		}, nil) && (*u2c).stop()
	}
	if len(all) == 0 && !(*u2c).ended && !(*c2u).ended {
		// As for a held connection (awaitNext): the next request of a busy
		// client may be on its way.
		for now := time.Now(); h.awaitNext(c, now) && len(all) == 0; now = time.Now() {
			time.Sleep(pollEvery)
			all = more()
		}
	}
	switch {
	case (*u2c).ended || !answerable(c.state):
		// The worker ended its side (shutdown) before it let go: the client
		// has its end of the stream already.
		if len(all) == 0 {
			return end(endClosed)
		}
		return end(endReset)
	case len(all) == 0:
		// Nothing since the last answer: end it, as the worker did.
		if !delivered() {
			return end(endReset)
		}
		return end(endClosed)
	}
	v := requestLine(all)
	for deadline := time.Now().Add(RequestWait); v == partial && !(*c2u).ended && len(all) < peekSize && time.Now().Before(deadline); {
		time.Sleep(pollEvery)
		all = more()
		v = requestLine(all)
	}
	if v != request {
		return end(endReset)
	}

	u2, err := dialUp(r.l)
	if err != nil {
		return end(endReset)
	}
	// Move what waits in h to the new upstream, the client's end of the
	// stream included.
	hconn, err = adoptFD(hfd)
	hfd = -1
	if err != nil {
		resetConn(u2)
		return end(endReset)
	}
	mv := &dir{src: hconn, dst: u2}
	mv.start(pp)
	var hin2 int
	moved := waitFor(queueStall, func() (bool, error) {
		_, out, err := queues(upFD)
		if err != nil {
			return false, err
		}
		err = connFD(hconn, func(fd int) { hin2, _, _ = queues(fd) })
		return out == 0 && hin2 == 0, err
	}, func() int64 { return int64(hin2) })
	if !mv.stop() || !moved || !delivered() {
		resetConn(hconn)
		resetConn(u2)
		return end(endReset)
	}
	if mv.ended {
		(*c2u).ended = true // the client's end went on to u2
	}
	hconn.Close()
	old := r.up
	oldAddr := localAddr(old)
	old.Close()
	r.up = u2
	r.rs.post(relayEvent{r: r, kind: evRedialed, up: localAddr(u2), old: oldAddr})
	*c2u = &dir{src: r.client, dst: u2, ended: (*c2u).ended}
	*u2c = &dir{src: u2, dst: r.client}
	if !(*c2u).ended {
		(*c2u).start(pp)
	}
	(*u2c).start(pp)
	return 0, true
}

// adoptFD makes a connection of a descriptor the master now holds alone,
// moving it into the netpoller (non-blocking: nobody else shares its open
// file description any more).
func adoptFD(fd int) (*net.TCPConn, error) {
	// A hold may have frozen it (heldConn.freeze); the netpoller needs
	// the usual mark.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "rescued")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("rescue: not a TCP connection")
	}
	return tc, nil
}

// answerable: states in which the master can still answer the client
// (the client may have ended its side: CLOSE_WAIT).
func answerable(state sockdiag.State) bool {
	return state == sockdiag.Established || state == sockdiag.CloseWait
}
