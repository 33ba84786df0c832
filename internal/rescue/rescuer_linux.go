package rescue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Rescuer owns every connection the master holds or relays. Its loop
// (Run) is the one goroutine that changes what it holds; Hold, Stranded,
// the relays and the handover talk to it through channels. Create it with
// New and run it with Run, which returns once everything it held is
// closed, relayed to its end, or handed to a successor master.
type Rescuer struct {
	cfg    Config
	log    *slog.Logger
	byName map[string]*Listener
	http   []*Listener // listeners whose keep-alive connections are held
	pipes  pipePool
	self   int
	// fdCounts: stat(2) of /proc/PID/fd gives the number of open
	// descriptors (Linux 6.2 and later; 0 before).
	fdCounts bool

	inUse    atomic.Int64 // held and relayed connections, against cfg.Max
	disabled atomic.Pointer[string]
	overMax  atomic.Bool // "at the bound" was logged and not yet cleared

	holdC   chan *holdBatch
	strandC chan *burst
	evC     chan relayEvent
	adoptC  chan *suspended
	quit    chan struct{} // closed when Run begins to shut down
	done    chan struct{} // closed when Run has returned

	// Owned by Run's goroutine.
	procs map[int]*proc
	// stoppedAt: holders Hold left stopped (quiesce), to continue.
	stoppedAt map[int]time.Time
	pending   []*heldConn
	relays    map[*relay]bool
	byUp      map[netip.AddrPort]*relay

	// stopped is set once Run stops taking bursts, guarded by strandMu.
	strandMu sync.Mutex
	stopped  bool

	// handover, guarded by mu.
	mu          sync.Mutex
	successor   *net.UnixConn // set by PrepareSuccessor, used once HandedOver
	handedOver  bool
	predecessor *net.UnixConn

	nHeld, nRelays                                     atomic.Int64
	queued, relayed, redialed, adopted, closed, resets atomic.Uint64

	wg sync.WaitGroup // the relays' goroutines and the predecessor's reader
}

// Owner of the rescuer's goroutines: a relay's run goroutine and its pumps
// end before Run returns (Run waits for wg); the predecessor's reader ends
// when its socket closes, which Run does on its way out.

// New makes the rescuer of cfg's listeners; it starts nothing.
func New(cfg Config) (*Rescuer, error) {
	if cfg.Max <= 0 {
		cfg.Max = DefaultMax
	}
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = DefaultHoldTimeout
	}
	if cfg.Armed == nil {
		cfg.Armed = func() bool { return true }
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rs := &Rescuer{
		cfg: cfg, log: log, byName: make(map[string]*Listener), self: os.Getpid(),
		holdC: make(chan *holdBatch), strandC: make(chan *burst, 16), evC: make(chan relayEvent, 256),
		adoptC: make(chan *suspended), quit: make(chan struct{}), done: make(chan struct{}),
		procs: make(map[int]*proc), stoppedAt: make(map[int]time.Time), relays: make(map[*relay]bool), byUp: make(map[netip.AddrPort]*relay),
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		rs.byName[l.Name] = l
		if l.Mode == HTTP {
			rs.http = append(rs.http, l)
		}
	}
	var st unix.Stat_t
	rs.fdCounts = unix.Stat("/proc/self/fd", &st) == nil && st.Size > 0
	return rs, nil
}

// Listener returns the configuration of the listener called name, or nil.
func (rs *Rescuer) Listener(name string) *Listener { return rs.byName[name] }

// Status reports what the rescuer holds and has done; safe from any
// goroutine.
func (rs *Rescuer) Status() Status {
	st := Status{
		Relays: int(rs.nRelays.Load()), Held: int(rs.nHeld.Load()),
		Queued: rs.queued.Load(), Relayed: rs.relayed.Load(), Redialed: rs.redialed.Load(),
		Adopted: rs.adopted.Load(), Closed: rs.closed.Load(), Reset: rs.resets.Load(),
	}
	if d := rs.disabled.Load(); d != nil {
		st.Disabled = *d
	}
	return st
}

// reserve counts one more connection against cfg.Max, if there is room.
func (rs *Rescuer) reserve() bool {
	if rs.inUse.Add(1) > int64(rs.cfg.Max) {
		rs.inUse.Add(-1)
		return false
	}
	return true
}

func (rs *Rescuer) release() { rs.inUse.Add(-1) }

// atMax logs once, until there is room again, that the bound was reached.
func (rs *Rescuer) atMax(what string) {
	if !rs.overMax.Swap(true) {
		rs.log.Warn(fmt.Sprintf("rescue: %d connections held or relayed, the bound: %s", rs.cfg.Max, what))
	}
}

// burst is the connections taken at once from one retired socket's queue.
type burst struct {
	l         *Listener
	socket    int
	fds       []int
	n, up     int
	failed    int
	lastError error
}

// Stranded takes connections accepted from the queue of a retired socket
// of listener (socket is its index in the group, for the log): each is
// relayed, for its life, to a fresh connection on the same listener, which
// the serving generation gets. It never blocks (it is called with the
// sockets' lock held) and returns how many of fds it took, in order; the
// caller resets the others, which is also what happens with mode Off, while
// no generation serves, or beyond Config.Max.
func (rs *Rescuer) Stranded(listener string, socket int, fds []int) int {
	l := rs.byName[listener]
	if l == nil || l.Mode == Off || !rs.cfg.Armed() || len(fds) == 0 {
		return 0
	}
	n := 0
	for n < len(fds) && rs.reserve() {
		n++
	}
	if n < len(fds) {
		rs.atMax(fmt.Sprintf("%d connections left in the accept queue of listener %s are reset", len(fds)-n, listener))
	}
	if n == 0 {
		return 0
	}
	b := &burst{l: l, socket: socket, fds: fds[:n:n], n: n}
	// Under strandMu so that a burst is either given to a loop that will
	// take it, or refused: shutdown drains strandC once it set stopped.
	rs.strandMu.Lock()
	defer rs.strandMu.Unlock()
	if !rs.stopped {
		select {
		case rs.strandC <- b:
			return n
		default:
		}
	}
	// The loop is gone, or far behind: today's outcome.
	rs.inUse.Add(-int64(n))
	return 0
}

// relayEvent is what a relay tells the loop.
type relayEvent struct {
	r    *relay
	kind evKind
	// up is the upstream's local address (evUp, evRedialed), old the
	// previous one (evRedialed).
	up, old netip.AddrPort
	err     error  // evUp: the dial failed
	how     endHow // evEnded
}

type evKind int

const (
	evUp evKind = iota
	evRedialed
	evEnded
)

// post sends e to the loop, which reads events until every relay ended.
func (rs *Rescuer) post(e relayEvent) { rs.evC <- e }

// start runs r in a goroutine of its own.
func (rs *Rescuer) start(r *relay) {
	rs.relays[r] = true
	rs.nRelays.Add(1)
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		r.run()
	}()
}

// Run is the loop: it takes what Hold and Stranded give it, watches the
// workers that still hold connections, decides for each one they let go
// of, and follows the relays. When ctx ends it settles what it holds,
// hands its relays to a successor master if there is one (see
// PrepareSuccessor) or else closes them, and returns once every relay's
// goroutine has returned.
func (rs *Rescuer) Run(ctx context.Context) {
	defer close(rs.done)
	if p := rs.takePredecessor(); p != nil {
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			rs.adoptFrom(p)
		}()
	}
	tick := time.NewTimer(time.Hour)
	tick.Stop()
	ticking := false
	for {
		if !ticking && (len(rs.procs) > 0 || len(rs.pending) > 0 || len(rs.stoppedAt) > 0) {
			tick.Reset(rs.tickEvery())
			ticking = true
		}
		select {
		case <-ctx.Done():
			tick.Stop()
			rs.shutdown()
			return
		case b := <-rs.holdC:
			rs.addHold(b)
		case b := <-rs.strandC:
			rs.relayQueue(b)
		case e := <-rs.evC:
			rs.relayEvent(e)
		case s := <-rs.adoptC:
			rs.adopt(s)
		case <-tick.C:
			ticking = false
			rs.tick(false)
		}
	}
}

// relayQueue starts a relay for each connection of a queue burst.
func (rs *Rescuer) relayQueue(b *burst) {
	for i, fd := range b.fds {
		c, err := adoptFD(fd)
		if err != nil {
			b.failed++
			b.lastError = err
			rs.release()
			rs.resets.Add(1)
			continue
		}
		r := newRelay(rs, b.l, kindQueued, c, nil)
		r.burst = b
		rs.start(r)
		b.fds[i] = -1
	}
	rs.burstDone(b)
}

// burstDone logs a queue burst's one line once each of its connections
// has an upstream, or failed to.
func (rs *Rescuer) burstDone(b *burst) {
	if b.up+b.failed < b.n {
		return
	}
	msg := fmt.Sprintf("listen %s: relayed %d connections left in the accept queue of socket %d, which no generation serves any more, to the serving generation", b.l.Name, b.up, b.socket)
	if b.failed > 0 {
		rs.log.Warn(fmt.Sprintf("%s; %d reset: %v", msg, b.failed, b.lastError), "listener", b.l.Name)
		return
	}
	rs.log.Info(msg, "listener", b.l.Name)
}

func (rs *Rescuer) relayEvent(e relayEvent) {
	r := e.r
	switch e.kind {
	case evUp:
		if e.err == nil {
			rs.byUp[e.up] = r
			switch r.kind {
			case kindQueued:
				rs.queued.Add(1)
			case kindKeepAlive:
				rs.relayed.Add(1)
			}
		}
		if b := r.burst; b != nil {
			if e.err != nil {
				b.failed++
				b.lastError = e.err
			} else {
				b.up++
			}
			rs.burstDone(b)
		}
	case evRedialed:
		delete(rs.byUp, e.old)
		rs.byUp[e.up] = r
		rs.redialed.Add(1)
	case evEnded:
		delete(rs.relays, r)
		for a, x := range rs.byUp {
			if x == r {
				delete(rs.byUp, a)
			}
		}
		rs.nRelays.Add(-1)
		if e.how != endHanded {
			rs.release()
			rs.overMax.Store(false)
		}
		switch e.how {
		case endReset:
			rs.resets.Add(1)
		case endClosed:
			rs.closed.Add(1)
		}
	}
}

// shutdown settles what is held, hands the relays on or closes them, and
// waits for every relay's goroutine.
func (rs *Rescuer) shutdown() {
	close(rs.quit)
	// Bursts nobody will relay now are reset, as their sockets' own
	// close would.
	rs.strandMu.Lock()
	rs.stopped = true
	rs.strandMu.Unlock()
	for len(rs.strandC) > 0 {
		b := <-rs.strandC
		for _, fd := range b.fds {
			resetFD(fd)
			rs.release()
			rs.resets.Add(1)
		}
	}
	// Every worker has exited by now (the pool ends first): decide for
	// what they left, relaying only if a successor serves.
	rs.tick(true)
	for _, h := range rs.pending {
		rs.settleNow(h, outReset)
	}
	rs.pending = nil
	succ := rs.takeSuccessor()
	if p := rs.takePredecessor(); p != nil {
		p.Close() // its reader returns
	}
	// Relays still dialling come up first; then each is suspended and
	// handed over, or told to close.
	asked := make(map[*relay]bool)
	replies := make(chan *suspended, 16)
	for len(rs.relays) > 0 {
		for r := range rs.relays {
			if asked[r] {
				continue
			}
			if !rs.isUp(r) {
				continue // not dialled yet: its evUp (or evEnded) comes
			}
			asked[r] = true
			cmd := relayCmd{quit: true}
			if succ != nil {
				cmd = relayCmd{suspend: replies}
			}
			select {
			case r.cmds <- cmd:
			case <-r.done:
			}
		}
		select {
		case e := <-rs.evC:
			rs.relayEvent(e)
		case s := <-replies:
			if s != nil {
				rs.handTo(succ, s)
			}
		case <-time.After(time.Second):
			// A relay that neither came up nor ended within a second is
			// dialling still; look again.
		}
	}
	// Replies of relays that ended after answering.
	for {
		select {
		case s := <-replies:
			if s != nil {
				rs.handTo(succ, s)
			}
			continue
		default:
		}
		break
	}
	if succ != nil {
		succ.Close()
	}
	done := make(chan struct{})
	go func() {
		rs.wg.Wait()
		close(done)
	}()
	for {
		select {
		case e := <-rs.evC:
			rs.relayEvent(e)
			continue
		case <-done:
		}
		break
	}
	rs.pipes.close()
}

// isUp reports whether r has an upstream address recorded.
func (rs *Rescuer) isUp(r *relay) bool {
	for _, x := range rs.byUp {
		if x == r {
			return true
		}
	}
	return false
}
