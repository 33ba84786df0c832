// Package handoff owns the master's listening sockets and moves new
// connections from one worker generation to the next inside the kernel.
//
// Invariant: the master never closes a socket while it lives, a generation
// receives connections only after [Sockets.Activate] pointed the traffic at
// it, which the worker group calls once the generation is ready, and a
// steered group's selector hands connections to the master's own sockets
// only, never to one that another process joined to the group.
//
// # Steered listeners (TCP and UDP)
//
// Each listen address owns a group of SO_REUSEPORT sockets bound to it, and
// a selector attached to the group before its second socket joins, which
// decides which socket receives new connections. Each generation is handed
// one socket of the group, one that no live generation holds. Activate
// points the selector at the new generation's socket, then waits, bounded
// by Config.QuietTimeout (--quiet-timeout), until the old socket has
// nothing left that its workers must serve: no half-open handshake that
// started before the switch, an empty accept queue, and every accepted
// connection has had its first request bytes read (receive queue empty and
// data received, from the kernel's socket diagnostics). Only then may the
// old generation be told to stop, so that even a worker that calls a plain
// http.Server.Shutdown loses nothing (golang/go#75591).
//
// The selector picks by socket identity, so that no other socket that joins
// the group ever gets a connection: any program of the same user may join
// it with SO_REUSEPORT (a second hotcluster, a worker that opens its own
// reuseport socket, leftovers of an earlier run). Where the kernel allows
// eBPF (CAP_BPF), it is an SK_REUSEPORT program over a REUSEPORT_SOCKARRAY
// that only the master fills (package internal/reuseport); steering is one
// map update. Elsewhere it is a one-instruction classic BPF program
// (SO_ATTACH_REUSEPORT_CBPF, "return k"), which selects by position: the
// kernel appends a socket that joins at the end of the group and fills a
// hole with the last one, and the master never closes a group socket, so
// Open creates all GroupSize sockets at once and a later joiner sits at a
// position the program never returns. A fifth generation holding sockets
// then fails to start rather than grow the group.
//
// Open refuses an address where any other socket listens (TCP) or is bound
// (UDP) on the same port with an overlapping address, whatever SO_REUSEPORT
// says: it returns an *InUseError naming the owners found in /proc. It
// looks before binding and again once the group is bound. Sockets taken
// over from a previous master are not checked; for one from systemd, only
// that socket may be there. Sockets that appear later are found at each
// Activate and by Watch: each is logged once, loudly, and listed by
// Foreign. One in the group gets nothing; one beside it (a more specific
// address, IPv4 beside a dual-stack socket) may be preferred by the
// kernel's lookup, which no selector controls, and is reported as taking
// connections.
//
// # A socket per worker slot (eBPF)
//
// With the eBPF selector each generation has a socket per worker slot,
// not one for all its workers: [Sockets.Files] takes the slot, and hands
// each worker its slot's socket (fd 3, as ever). The program spreads new
// connections over the serving generation's slots by the kernel's flow
// hash (the one the group would use itself), modulo the number of slots
// served, through a slot table the master rewrites (package
// internal/reuseport). Why: with one accept queue per generation, which
// worker gets a connection is decided by wake-up order, and measured here
// the busiest of 4 workers served 1.4 to 2.4 times what the idlest did;
// by flow hash they serve within a few percent of each other
// (docs/benchmarks.md). The cost: a queue per worker is not
// work-conserving: a connection waits for its own worker even when another
// is idle, which shows on a host whose CPUs are oversubscribed.
//
// With [BalanceSticky] (--balance sticky) the client's source address, not
// the flow hash, picks the slot, through a consistent-hash table of slot
// numbers (internal/reuseport): a slot's clients stay with it when the
// traffic moves to the slot's socket of the next generation, across an
// upgrade (the table's map is persisted with the others), and only about
// 1/(N+1) of them move when an N-th slot is added. Open refuses it
// ([StickyError]) for a TCP or UDP listener without a socket per slot.
//
// [Sockets.Serve] sets which of a generation's slots are served: the
// worker group leaves out a slot whose worker crashed (until its respawn
// calls Files again) or is given up, and slots that scaling down removes,
// before their workers stop accepting. The queue of a slot left out is
// treated like an idle socket's (below). Slot sockets never leave the
// group while the master lives: the kernel would move its last socket into
// the hole. Classic BPF, unix sockets and sockets from systemd whose group
// the master cannot grow keep one socket per generation (classic BPF
// selects by position in a fixed group of GroupSize sockets, which a
// socket per slot would outgrow).
//
// # Moving a slot at a time
//
// [Sockets.Move] moves the new connections of some slots to another
// generation's sockets of those slots and leaves the others where they
// are: the worker group's rolling reload (--rollout) hands a batch of
// slots at a time to the next generation, and back when a batch fails.
// The slot table keeps its order (the slots in order, each entry the
// socket of the generation that serves that slot), so a slot's share of
// the flow hash reaches another socket and no other slot's changes. Like
// Activate it then waits for the sockets that had those slots to be
// quiet. Once every slot is on one generation that generation is the
// active one, as after Activate. Move refuses listeners without a socket
// per slot ([ErrNoSlots]) and works on no socket while an upgrade holds
// them (frozen).
//
// A socket that no generation holds and no selector points to is idle:
// whatever still waits in its queue (connections the quiet wait gave up
// on, or those of a previous master that was killed) is taken off it when
// it becomes idle (Release, ReleasePrevious, Activate): TCP connections go
// to Config.Stranded (the master relays them to the serving generation)
// while a generation holds the active socket, and the rest is reset, so
// that clients fail at once instead of waiting for good.
//
// The group's sockets are created with Multipath TCP off: since Go 1.24
// net.Listen creates MPTCP sockets where it can, and those refuse the BPF
// options. TCP sockets are TCP_NODELAY unless Config.Nagle is set;
// accepted connections inherit it.
//
// # Binary upgrade
//
// Persist stores every socket (the slots' sockets too), and the eBPF maps
// (a socket can be in one REUSEPORT_SOCKARRAY only, so the new master must
// use the same ones; it loads its own program over them). A master that
// predates sockets per slot stores no slot table: the new master then
// keeps one socket per generation until it is restarted. The new master takes the group over
// unchecked, in the same order. A master whose upgrade failed calls Reclaim
// to point the selectors back at its own sockets.
//
// # Shared listeners (fallback)
//
// Unix sockets, and any listener whose group cannot be steered (the kernel
// refuses the program), use one socket for every generation. The socket
// stays open in the master, so connections wait in its backlog while
// generations change; workers that drain well lose nothing.
//
// # Descriptors
//
// Sockets cross exec only as close-on-exec duplicates made through
// SyscallConn ([Sockets.Files]), never through (*os.File).Fd or
// (*net.TCPListener).File, which clear O_NONBLOCK on the open file
// description that the master and every worker share.
package handoff
