package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for [Config].
const (
	// DefaultQuietTimeout bounds how long Activate waits for the old
	// generation's sockets to have nothing left to serve.
	DefaultQuietTimeout = 5 * time.Second
	// DefaultGrace is waited after the old sockets went quiet, for packets
	// the kernel is still delivering on loopback-fast paths.
	DefaultGrace = 20 * time.Millisecond
	// DefaultWatchInterval is how often [Sockets.Watch] looks for sockets
	// not made by hotcluster on the steered addresses. Each look is one
	// socket-diagnostics dump of the listening sockets of each port.
	DefaultWatchInterval = 5 * time.Second
)

// GroupSize is the number of sockets of a group steered with classic BPF,
// all created by Open: enough for the serving generation, one starting and
// two still draining. The classic program selects by position in the
// group, and the kernel appends a joining socket at the end and fills a
// hole with the last socket; since the master never closes a group socket,
// sockets that join later sit at positions the program never returns. A
// generation that would need a fifth socket fails to start instead. Groups
// steered with eBPF select by identity, and grow on demand up to 64.
const GroupSize = 4

// SlotSockets is how many sockets per generation a listener with a socket
// per slot has at most: slots from SlotSockets on share the socket of
// slot % SlotSockets with the workers of those slots. It is the size of the
// eBPF slot table (internal/reuseport.MaxSlots).
const SlotSockets = 64

// sockSlot is the socket slot of worker slot.
func sockSlot(slot int) int { return slot % SlotSockets }

// Mode says how a listener moves traffic between generations.
type Mode int

const (
	// Steered listeners own a SO_REUSEPORT group and a BPF selector.
	Steered Mode = iota
	// Shared listeners hand one socket to every generation.
	Shared
)

func (m Mode) String() string {
	if m == Steered {
		return "steered"
	}
	return "shared"
}

// Balance says how a listener with a socket per worker slot spreads new
// connections over the serving slots.
type Balance int

const (
	// BalanceHash spreads them by the kernel's flow hash, modulo the
	// number of slots served: each connection lands anywhere.
	BalanceHash Balance = iota
	// BalanceSticky sends each client source address (IPv4 or IPv6) to
	// one slot, through a consistent-hash table over the served slots: the
	// same slot across reloads (its new worker takes the clients over),
	// upgrades of the master, and the fewest clients moved when slots
	// come or go (see package internal/reuseport). It needs the eBPF
	// selector on every TCP and UDP listener (see [StickyError]).
	BalanceSticky
)

func (b Balance) String() string {
	if b == BalanceSticky {
		return "sticky"
	}
	return "hash"
}

// ParseBalance reads "hash" or "sticky".
func ParseBalance(s string) (Balance, error) {
	switch s {
	case "hash":
		return BalanceHash, nil
	case "sticky":
		return BalanceSticky, nil
	}
	return 0, fmt.Errorf("balance %q: want hash or sticky", s)
}

// StickyError is Open's refusal of [BalanceSticky] for a listener that
// cannot keep clients on a slot: one without a socket per slot (shared,
// steered by classic BPF, or kept from a master that predates sockets per
// slot).
type StickyError struct {
	Listener Spec
	// Why is how the listener moves traffic instead, and why.
	Why string
}

func (e *StickyError) Error() string {
	return fmt.Sprintf("--balance sticky: listen %s: %s; sticky balance needs a socket per worker slot, which only the eBPF selector gives (run as root or with CAP_BPF, leave --handoff at auto), or use --balance hash", e.Listener, e.Why)
}

// Store keeps sockets across an upgrade of the master (package upgrade
// implements it). File returns nil, nil when nothing is stored under name.
type Store interface {
	File(name string) (*os.File, error)
	AddFile(name string, f *os.File) error
}

// Config describes the listeners. Zero fields mean the defaults.
type Config struct {
	Specs []Spec
	// Store, when set, receives every socket on Persist, so that it
	// survives an upgrade.
	Store Store
	// Shared forces the shared-socket mode for every listener.
	Shared bool
	// Balance is how listeners with a socket per slot spread connections;
	// BalanceHash if zero. Unix sockets are not balanced (they have no
	// source address), every other listener must have a socket per slot
	// for BalanceSticky, or Open fails with a *StickyError.
	Balance Balance
	// Previous, for a master started by an upgrade, says which sockets
	// (taken from Store) the previous master's workers hold.
	Previous *Previous
	// Inherited are sockets handed in by the service manager (socket
	// activation), each named by its file name (LISTEN_FDNAMES). One that
	// matches a Spec by name, or else by address, is used instead of
	// binding; Open closes them all (it keeps duplicates of those it uses).
	Inherited []*os.File
	// QuietTimeout bounds the wait for an old socket to be quiet (see
	// Activate); DefaultQuietTimeout if zero.
	QuietTimeout time.Duration
	Grace        time.Duration
	// Nagle leaves Nagle's algorithm on for the TCP sockets Open binds. By
	// default they are TCP_NODELAY, which the connections accepted from
	// them inherit (Linux copies the option to each accepted socket):
	// request-response servers answer at once rather than up to 40 ms late
	// (delayed ACK against Nagle). Sockets from the service manager keep
	// what it set (systemd's NoDelay=).
	Nagle bool
	// Log receives the lines the sockets have to tell on their own: sockets
	// not made by hotcluster on a listener's address, connections reset in
	// a queue nobody serves. Nil discards them.
	Log func(format string, args ...any)
	// Stranded, when set, takes the TCP connections left in the accept
	// queue of a socket that no generation serves any more, while a
	// generation holds the active socket: fds are the master's own
	// descriptors of them, accepted in order, and it returns how many of
	// them (the first n) it took; the others are reset. It is called with
	// the sockets' lock held and must not block nor call back (package
	// rescue relays them to the serving generation). Nil resets them all.
	Stranded func(listener string, socket int, fds []int) (n int)

	// classic forces classic BPF even where eBPF is allowed (tests).
	classic bool
}

// Sockets is the master's set of listeners. Its methods are safe for
// concurrent use.
type Sockets struct {
	cfg Config

	mu      sync.Mutex
	ls      []*listener
	holders map[uint64]int // generation -> index in each steered group
	active  int            // index the selectors point to
	// served is, per generation, the slots (in order) whose sockets the
	// selectors spread its connections over, where listeners have a
	// socket per slot (see Files and Serve).
	served map[uint64][]int
	// moved holds the slots whose connections go to another generation
	// than the active one's, during a rolling reload (see Move).
	moved  map[int]uint64
	closed bool
	unused []string
	// frozen is set from Persist until Reclaim: while an upgraded master
	// may be steering the same groups, this one leaves every queue alone.
	frozen bool

	// checking serialises looks for foreign sockets; fmu guards foreign.
	checking sync.Mutex
	fmu      sync.Mutex
	foreign  map[string][]*Foreign // listener name -> what is there now
}

// sock is one socket the master holds, as a bare close-on-exec descriptor
// (a rawFD for both fields). It is kept out of Go's netpoller on purpose: a
// listening socket registered there wakes the master's runtime for every
// incoming connection, though the master never accepts one (measured: 10%
// of a CPU and 10% fewer connections per second for the workers).
type sock struct {
	rc syscall.RawConn
	c  io.Closer
	// ino and cookie identify the socket: its inode number (as
	// /proc/PID/fd and socket diagnostics show it) and SO_COOKIE.
	ino    uint64
	cookie uint64
}

// selector decides which socket of a steered group receives new
// connections. Its methods are called under Sockets.mu.
type selector interface {
	// kind is "ebpf" or "cbpf", for logs and status.
	kind() string
	// slotted reports whether it can spread connections over a socket
	// per worker slot (an eBPF selector with a slot table).
	slotted() bool
	// add tells that socket k of the group exists (eBPF stores it).
	add(k int, so *sock) error
	// steer selects socket k for new connections from now on; a slotted
	// selector spreads them over the sockets of k's slots.
	steer(k int, slots []int) error
	// persist stores what an upgraded master needs to steer the group.
	persist(st Store, spec Spec) error
	// reclaim makes this master's selector the group's again, pointing at
	// socket k (after an upgrade that failed); group is socket 0.
	reclaim(group *sock, k int, slots []int) error
	close()
}

type listener struct {
	// spec is as configured; it names the sockets in the Store.
	spec Spec
	// network binds new sockets of a steered group: that of socket 0,
	// which may be more precise than spec's (tcp4 for a socket from
	// systemd bound to an IPv4 address).
	network string
	mode    Mode
	adopted bool    // handed in by the service manager
	addr    string  // resolved, e.g. with the port chosen for :0
	socks   []*sock // steered: the group, by index; shared: one socket
	// extra are, with per-slot sockets (perSlot), the sockets of slots 1
	// and up of each index k, by {k, slot}; slot 0's is socks[k].
	extra map[[2]int]*sock
	// why is the reason a listener fell back to shared mode, or to classic
	// BPF, for the log.
	why string
	// file is the unix socket file this master bound, removed at the final
	// stop; nil for every other listener.
	file *unixFile
	// sel decides which socket of a steered group gets new connections;
	// limit is how many sockets the group may have (see GroupSize).
	sel   selector
	limit int
}

// all returns every socket of the listener's group that the master made:
// each index's, and each slot's.
func (l *listener) all() []*sock {
	out := append([]*sock(nil), l.socks...)
	for _, so := range l.extra {
		out = append(out, so)
	}
	return out
}

// canStick returns a *StickyError unless l can keep clients on a slot (or
// is a unix socket, which has no client address to keep).
func (l *listener) canStick() error {
	if l.spec.Network == "unix" || l.perSlot() {
		return nil
	}
	how := l.mode.String()
	if l.mode == Steered && l.sel != nil {
		how += " by " + l.sel.kind()
	}
	switch {
	case l.why != "":
		why, _, _ := strings.Cut(l.why, ";")
		how += " (" + why + ")"
	case l.mode == Steered:
		how += " with one socket per generation (kept from a master that predates sockets per slot)"
	}
	return &StickyError{Listener: l.spec, Why: how}
}

// Open binds every listener, or takes it over from Store. On error nothing
// is left open and the error names the address.
func Open(cfg Config) (*Sockets, error) {
	if cfg.QuietTimeout <= 0 {
		cfg.QuietTimeout = DefaultQuietTimeout
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	s := &Sockets{cfg: cfg, holders: make(map[uint64]int), served: make(map[uint64][]int), moved: make(map[int]uint64), foreign: make(map[string][]*Foreign)}
	inherited, err := describeInherited(cfg.Inherited)
	if err != nil {
		closeAll(cfg.Inherited)
		return nil, err
	}
	specs := cfg.Specs
	if len(specs) == 0 {
		// No --listen: serve every socket systemd handed in.
		for _, in := range inherited {
			specs = append(specs, in.spec)
		}
	}
	seen := make(map[string]bool)
	for _, spec := range specs {
		if seen[spec.Name] {
			s.Close(true)
			closeAll(cfg.Inherited)
			return nil, fmt.Errorf("listen %s: name %q is used twice; give each --listen its own NAME=", spec, spec.Name)
		}
		seen[spec.Name] = true
		var l *listener
		var err error
		if cfg.Previous != nil {
			l, err = s.takeOver(spec)
		}
		if l != nil || err != nil {
			// Kept from the previous master.
		} else if in := matchInherited(inherited, spec); in != nil {
			l, err = adoptListener(spec, in, &cfg)
		} else {
			l, err = openListener(spec, &cfg)
		}
		if err != nil {
			s.Close(true)
			closeAll(cfg.Inherited)
			return nil, err
		}
		s.ls = append(s.ls, l)
	}
	for _, in := range inherited {
		if !in.used {
			s.unused = append(s.unused, in.spec.Name)
		}
	}
	closeAll(cfg.Inherited)
	if cfg.Balance == BalanceSticky {
		for _, l := range s.ls {
			if err := l.canStick(); err != nil {
				s.Close(cfg.Previous == nil)
				return nil, err
			}
		}
	}
	if p := cfg.Previous; p != nil {
		// The previous master's workers hold these until it has drained.
		s.active = p.Active
		for _, k := range p.Held {
			s.holders[PreviousMaster-uint64(k)] = k
		}
	}
	return s, nil
}

// PreviousMaster is the generation number under which Open records the
// sockets a previous master's workers hold (counting down per socket);
// Release it once that master has exited.
const PreviousMaster = ^uint64(0)

// Previous describes what a previous master's workers hold, for a master
// started by an upgrade.
type Previous struct {
	// Active is the socket index the selectors point to.
	Active int
	// Held are the indexes held by its generations.
	Held []int
}

// Handover describes this master's sockets for the master an upgrade
// starts; see Config.Previous.
func (s *Sockets) Handover() Previous {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := Previous{Active: s.active}
	seen := map[int]bool{}
	for _, k := range s.holders {
		if !seen[k] {
			seen[k] = true
			p.Held = append(p.Held, k)
		}
	}
	return p
}

// ReleasePrevious frees the sockets of a previous master that has exited,
// and resets the connections left in the queues of those that are now
// idle (see Release): nobody will accept them, also when that master was
// killed before its workers could.
func (s *Sockets) ReleasePrevious() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for gen := range s.holders {
		if gen > PreviousMaster-1024 {
			delete(s.holders, gen)
		}
	}
	s.resetIdleLocked()
}

// takeOver adopts the sockets a previous master stored for spec, or
// returns nil when it stored none.
func (s *Sockets) takeOver(spec Spec) (*listener, error) {
	var l *listener
	for i := 0; ; i++ {
		f, err := s.cfg.Store.File(storeName(spec, i))
		if err != nil {
			return nil, err
		}
		if f == nil {
			break
		}
		so, err := sockOf(f, f)
		if err != nil {
			return nil, fmt.Errorf("listen %s: socket %d from the previous master: %w", spec, i, err)
		}
		if l == nil {
			l = &listener{spec: spec, mode: Steered, adopted: spec.Network == "unix"}
		}
		l.socks = append(l.socks, so)
	}
	if l == nil {
		return nil, nil
	}
	for k := range l.socks {
		for slot := 1; ; slot++ {
			f, err := s.cfg.Store.File(storeSlotName(spec, k, slot))
			if err != nil {
				return nil, err
			}
			if f == nil {
				break
			}
			so, err := sockOf(f, f)
			if err != nil {
				return nil, fmt.Errorf("listen %s: slot %d of socket %d from the previous master: %w", spec, slot, k, err)
			}
			if l.extra == nil {
				l.extra = make(map[[2]int]*sock)
			}
			l.extra[[2]int{k, slot}] = so
		}
	}
	fd := int(l.socks[0].c.(rawFD))
	got, err := socketSpec(fd, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("listen %s: socket from the previous master: %w", spec, err)
	}
	l.addr = got.Addr
	if reuse, _ := getReusePort(fd); spec.Network == "unix" || reuse == 0 {
		l.mode, l.why = Shared, "kept from the previous master"
		if spec.Network == "unix" {
			l.why = "unix socket"
		}
	} else if len(l.socks) == 1 && s.cfg.Shared {
		l.mode, l.why = Shared, "--handoff shared"
	} else {
		l.network = got.Network
		if err := s.inheritSelector(l); err != nil {
			for _, so := range l.socks {
				so.c.Close()
			}
			for _, so := range l.extra {
				so.c.Close()
			}
			return nil, err
		}
	}
	return l, nil
}

// Unused names the sockets handed in by the service manager that no
// --listen matched; they were closed.
func (s *Sockets) Unused() []string { return s.unused }

// Persist stores every socket in Config.Store, for a master about to hand
// over to an upgraded one, and the maps of the eBPF selectors, which the
// upgraded master must share (see package internal/reuseport). It is not
// done earlier because the store keeps the sockets as *os.File, which sit
// in Go's netpoller (see sock). From now on, until Reclaim, this master
// resets no queue: the upgraded one may already serve from sockets this
// one thinks idle.
func (s *Sockets) Persist() error {
	if s.cfg.Store == nil {
		return errors.New("handoff: no store to persist the sockets in")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = true
	for _, l := range s.ls {
		for i, so := range l.socks {
			f, err := dupFile(so.rc, l.spec.Name)
			if err != nil {
				return fmt.Errorf("listen %s: %w", l.spec, err)
			}
			err = s.cfg.Store.AddFile(storeName(l.spec, i), f)
			f.Close()
			if err != nil {
				return err
			}
		}
		for ks, so := range l.extra {
			f, err := dupFile(so.rc, l.spec.Name)
			if err != nil {
				return fmt.Errorf("listen %s: %w", l.spec, err)
			}
			err = s.cfg.Store.AddFile(storeSlotName(l.spec, ks[0], ks[1]), f)
			f.Close()
			if err != nil {
				return err
			}
		}
		if l.mode == Steered {
			if err := l.sel.persist(s.cfg.Store, l.spec); err != nil {
				return fmt.Errorf("listen %s: %w", l.spec, err)
			}
		}
	}
	return nil
}

// Reclaim undoes what an upgrade that failed may have changed: it points
// every selector back at this master's active sockets (the failed master
// may have steered them to its own generation) and lets this master reset
// idle queues again, such as that of the socket the failed master served.
func (s *Sockets) Reclaim() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.frozen = false
	var errs []error
	for _, l := range s.ls {
		if l.mode != Steered {
			continue
		}
		if err := l.sel.reclaim(l.socks[0], s.active, s.activeSlotsLocked(l)); err != nil {
			errs = append(errs, fmt.Errorf("listen %s: steer back to socket %d: %w", l.spec, s.active, err))
		}
	}
	s.resetIdleLocked()
	return errors.Join(errs...)
}

func storeName(spec Spec, i int) string {
	return storeKey(spec, strconv.Itoa(i))
}

// storeSlotName names the socket of slot (1 and up) of index k.
func storeSlotName(spec Spec, k, slot int) string {
	return storeKey(spec, strconv.Itoa(k)+"/"+strconv.Itoa(slot))
}

func storeKey(spec Spec, what string) string {
	return "hotcluster/" + spec.Network + "/" + spec.Addr + "/" + what
}

// Names returns the listener names in order, as LISTEN_FDNAMES lists them.
func (s *Sockets) Names() []string {
	names := make([]string, len(s.ls))
	for i, l := range s.ls {
		names[i] = l.spec.Name
	}
	return names
}

// Listener describes one listener for logs and status.
type Listener struct {
	Spec Spec
	// Addr is the bound address (the chosen port for :0).
	Addr string
	Mode Mode
	// Selector is, for a steered listener, what selects the socket of new
	// connections: "ebpf" (by socket identity) or "cbpf" (by position in a
	// group of GroupSize sockets).
	Selector string
	// Why says why a listener is shared, or steered with classic BPF.
	Why string
	// PerSlot says each worker slot has a socket of its own (the eBPF
	// selector), rather than one per generation.
	PerSlot bool
	// Sticky says the slot is chosen by the client's source address
	// (BalanceSticky on a listener with a socket per slot).
	Sticky bool
}

// Listeners describes every listener, in order.
func (s *Sockets) Listeners() []Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Listener, len(s.ls))
	for i, l := range s.ls {
		out[i] = Listener{Spec: l.spec, Addr: l.addr, Mode: l.mode, Why: l.why}
		if l.mode == Steered {
			out[i].Selector = l.sel.kind()
			out[i].PerSlot = l.perSlot()
			out[i].Sticky = out[i].PerSlot && s.cfg.Balance == BalanceSticky
		}
	}
	return out
}

// Files returns, for the worker in slot of generation gen, one close-on-exec
// duplicate per listener in order, for exec.Cmd.ExtraFiles. The caller
// closes them once the worker started. The first call for a generation
// assigns it an index of each steered group that no other live generation
// holds; later calls (respawns, scaling) return the same sockets. Where a
// listener has a socket per slot (an eBPF selector), each slot gets its
// own, and the selector spreads the generation's connections over its
// slots by flow hash: Files adds the slot to those the generation serves
// (Serve sets them). The generation receives no connection until Activate.
func (s *Sockets) Files(gen uint64, slot int) ([]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	k, ok := s.holders[gen]
	if !ok {
		var err error
		if k, err = s.assignLocked(gen); err != nil {
			return nil, err
		}
	}
	slot = sockSlot(slot)
	files := make([]*os.File, 0, len(s.ls))
	for _, l := range s.ls {
		so := l.socks[0]
		if l.mode == Steered {
			var err error
			if so, err = l.sockAt(k, slot); err != nil {
				closeAll(files)
				return nil, err
			}
		}
		f, err := dupFile(so.rc, l.spec.Name)
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("listen %s: %w", l.spec, err)
		}
		files = append(files, f)
	}
	if !slices.Contains(s.served[gen], slot) {
		s.served[gen] = append(s.served[gen], slot)
		slices.Sort(s.served[gen])
		if k == s.active {
			// A serving generation that grows: its new slot gets its share
			// at once (the worker accepts what queued meanwhile).
			if err := s.steerLocked(k, gen); err != nil {
				closeAll(files)
				return nil, err
			}
		}
	}
	return files, nil
}

// Serve sets the slots of generation gen whose sockets get its new
// connections, where listeners have a socket per slot: the pool leaves
// out a slot whose worker is down (crashed, given up) or about to stop
// (scaling down), and Files puts a slot back. What is left in the queue of
// a slot left out is relayed (Config.Stranded) or reset like that of any
// idle socket, now and at each later Serve or Release. An empty set
// changes nothing: connections wait in the sockets' queues for a worker
// rather than being refused. It does nothing for listeners without a
// socket per slot.
func (s *Sockets) Serve(gen uint64, slots []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	k, ok := s.holders[gen]
	if !ok || len(slots) == 0 {
		return nil
	}
	socks := make([]int, len(slots))
	for i, slot := range slots {
		socks[i] = sockSlot(slot)
	}
	slots = slices.Compact(slices.Sorted(slices.Values(socks)))
	if slices.Equal(slots, s.served[gen]) {
		s.resetIdleLocked()
		return nil
	}
	s.served[gen] = slots
	if k == s.active {
		if err := s.steerLocked(k, gen); err != nil {
			return err
		}
	}
	s.resetIdleLocked()
	return nil
}

// steerLocked points every steered listener at index k, spread over
// generation gen's served slots where it has a socket per slot.
func (s *Sockets) steerLocked(k int, gen uint64) error {
	for _, l := range s.ls {
		if l.mode != Steered {
			continue
		}
		if len(s.moved) > 0 && k == s.active && l.perSlot() {
			if err := l.steerRefs(s.tableLocked(k, gen)); err != nil {
				return fmt.Errorf("listen %s: steer to the slots of two generations: %w", l.spec, err)
			}
			continue
		}
		if err := l.steer(k, s.served[gen]); err != nil {
			return fmt.Errorf("listen %s: steer to socket %d: %w", l.spec, k, err)
		}
	}
	return nil
}

// activeSlotsLocked is the slots of the active index whose sockets l
// spreads connections over: those the generation holding it serves, or
// all it has when none does (a previous master's).
func (s *Sockets) activeSlotsLocked(l *listener) []int {
	for gen, k := range s.holders {
		if k == s.active {
			return s.served[gen]
		}
	}
	return upTo(l.slotsOf(s.active))
}

// upTo returns 0, 1, ..., n-1.
func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// ErrClosed is returned by Files after Close.
var ErrClosed = errors.New("handoff: sockets closed")

func (s *Sockets) assignLocked(gen uint64) (int, error) {
	held := make(map[int]bool)
	for _, k := range s.holders {
		held[k] = true
	}
	// The active socket is never handed to a new generation while another
	// one serves: it would get traffic before it is ready.
	if len(s.holders) > 0 {
		held[s.active] = true
	}
	k := 0
	for held[k] {
		k++
	}
	for _, l := range s.ls {
		if l.mode == Steered && k >= l.limit {
			return 0, fmt.Errorf("listen %s: %d generations hold sockets: wait for the old ones to drain", l.spec, l.limit)
		}
	}
	for _, l := range s.ls {
		if l.mode != Steered {
			continue
		}
		for len(l.socks) <= k {
			if err := l.grow(); err != nil {
				if !l.adopted {
					return 0, err
				}
				if s.cfg.Balance == BalanceSticky {
					return 0, &StickyError{Listener: l.spec, Why: fmt.Sprintf("cannot add sockets to the group of systemd's socket: %v", err)}
				}
				// systemd made the socket, maybe as another user: the
				// kernel only lets the same user join its group.
				l.mode, l.why = Shared, fmt.Sprintf("cannot add sockets to the group of systemd's socket: %v", err)
				break
			}
		}
	}
	s.holders[gen] = k
	return k, nil
}

// Activate points new connections at generation gen's sockets, then waits,
// bounded by ctx and Config.QuietTimeout, until the previously active
// sockets have nothing left that their workers must serve (see the package
// comment). It returns a *QuietError when that wait ran out; the traffic has
// moved all the same. Calling it for the already active generation returns
// at once. Before it steers, it looks for sockets not made by hotcluster on
// the steered addresses (see Foreign).
func (s *Sockets) Activate(ctx context.Context, gen uint64) error {
	s.checkForeign()
	s.mu.Lock()
	k, ok := s.holders[gen]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("handoff: activate generation %d: it holds no sockets", gen)
	}
	if k == s.active {
		var back []int
		for slot := range s.moved {
			back = append(back, slot)
		}
		s.mu.Unlock()
		if len(back) == 0 {
			return nil
		}
		// Slots a rolling reload moved elsewhere come back.
		return s.Move(ctx, gen, back)
	}
	old := s.active
	var quiet []oldSocks
	// A turnover of the whole generation ends a rolling one: every slot is
	// gen's from now on.
	clear(s.moved)
	if err := s.steerLocked(k, gen); err != nil {
		s.mu.Unlock()
		return err
	}
	for _, l := range s.ls {
		if l.mode != Steered {
			continue
		}
		q := oldSocks{l, []*sock{l.socks[old]}}
		for slot := 1; slot < l.slotsOf(old); slot++ {
			q.socks = append(q.socks, l.extra[[2]int{old, slot}])
		}
		quiet = append(quiet, q)
	}
	s.active = k
	s.mu.Unlock()
	return s.quietAfter(ctx, quiet)
}

// QuietError reports that an old socket still had work when Activate stopped
// waiting for it.
type QuietError struct {
	Listener Spec
	Err      error
}

func (e *QuietError) Error() string {
	return fmt.Sprintf("listen %s: old socket not quiet: %v", e.Listener, e.Err)
}

func (e *QuietError) Unwrap() error { return e.Err }

// Moved reports that the traffic moved all the same (package workers tells
// a QuietError from a failure to steer by it).
func (e *QuietError) Moved() bool { return true }

// Release tells that generation gen has no worker left; its sockets may be
// handed to a later generation. A socket that no generation holds and no
// selector points to is idle: the connections left in its accept queue
// (those that Activate's quiet wait gave up on) would wait there for good,
// so they are reset now, each client seeing a connection reset at once;
// for UDP, its queued datagrams are dropped. One line is logged with the
// count.
func (s *Sockets) Release(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.holders, gen)
	delete(s.served, gen)
	moved := false
	for slot, g := range s.moved {
		if g == gen {
			delete(s.moved, slot)
			moved = true
		}
	}
	if activeGen, ok := s.activeGenLocked(); moved && ok {
		// A rolling reload left slots on a generation that is gone: they
		// are the active generation's again.
		if err := s.steerLocked(s.active, activeGen); err != nil && s.cfg.Log != nil {
			s.cfg.Log("release generation %d: %v", gen, err)
		}
	}
	s.resetIdleLocked()
}

// Close closes every socket; with unlink it also removes unix socket files.
// A master that hands over to an upgraded one must not unlink.
func (s *Sockets) Close(unlink bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, l := range s.ls {
		if l.sel != nil {
			l.sel.close()
		}
		for _, so := range l.socks {
			so.c.Close()
		}
		for _, so := range l.extra {
			so.c.Close()
		}
		if unlink {
			l.removeFile()
		}
	}
	s.ls = nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// String encodes p for the master an upgrade starts, as ParsePrevious
// reads it: "active=1;held=0,1".
func (p Previous) String() string {
	held := make([]string, len(p.Held))
	for i, k := range p.Held {
		held[i] = strconv.Itoa(k)
	}
	return fmt.Sprintf("active=%d;held=%s", p.Active, strings.Join(held, ","))
}

// ParsePrevious reads what Previous.String wrote; keys it does not know
// are skipped, so that a newer master's state is read by an older one.
func ParsePrevious(s string) (Previous, error) {
	var p Previous
	for _, kv := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "active":
			n, err := strconv.Atoi(v)
			if err != nil {
				return p, fmt.Errorf("handoff: previous master's sockets %q: active: %w", s, err)
			}
			p.Active = n
		case "held":
			for _, h := range strings.Split(v, ",") {
				if h == "" {
					continue
				}
				n, err := strconv.Atoi(h)
				if err != nil {
					return p, fmt.Errorf("handoff: previous master's sockets %q: held: %w", s, err)
				}
				p.Held = append(p.Held, n)
			}
		}
	}
	return p, nil
}
