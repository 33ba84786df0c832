package intercept

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/hotcluster/hotcluster/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// Callbacks tell the master what a worker's supervisor saw. They are
// called from [Supervisor.Run]'s goroutine, always after the worker's
// system call was answered, so they may wait for the pool's loop without
// holding the worker up.
type Callbacks struct {
	// Installed: the shim loaded the filter; noNewPrivs: it had to set
	// PR_SET_NO_NEW_PRIVS first (see the package comment).
	Installed func(noNewPrivs bool)
	// Failed: interception does not work for this worker, for the reason
	// err gives (the shim could not load the filter; the kernel cannot put
	// a socket into a process; the master may not look into it). The
	// worker runs on as it would without interception. At most once per
	// Supervisor.
	Failed func(err error)
	// Bound: the worker bound asked (as String prints it) and got the
	// socket of listener i instead.
	Bound func(i int, asked string)
	// Listened: the worker called listen(2) on listener i's socket, or,
	// for a datagram listener, which has no listen(2), its bind got it.
	Listened func(i int)
	// InUse: the worker bound asked, an IP address with a port that is no
	// listener's and that another socket already holds: the bind fails
	// (EADDRINUSE, unless both sides share it with SO_REUSEPORT). At most
	// once per address per Supervisor.
	InUse func(asked string)
}

// maxInUseChecks bounds the distinct addresses one worker's binds are
// looked up for (see Callbacks.InUse): each look is a socket-diagnostics
// dump, and a worker that binds a new port per request must not cost the
// master one each time.
const maxInUseChecks = 64

// Supervisor answers the bind and listen notifications of one worker (and
// its descendants). Create it with NewSupervisor when the worker is
// started; one goroutine runs Run; Close ends it.
type Supervisor struct {
	conn    *os.File // ours of the Pair, until the shim reported
	targets []*target
	cb      Callbacks

	mu     sync.Mutex
	closed bool
	notif  *os.File // the notification descriptor, once received

	failed  bool
	checked map[string]bool // addresses looked up for InUse
}

// NewSupervisor returns the supervisor of the worker whose shim has the
// other end of conn (see Pair), which it takes over. sockets are the
// worker's listeners in --listen order, named by names; it keeps
// duplicates of them, outside the netpoller, and the caller still closes
// its own.
func NewSupervisor(conn *os.File, names []string, sockets []*os.File, cb Callbacks) (*Supervisor, error) {
	s := &Supervisor{conn: conn, cb: cb, checked: make(map[string]bool)}
	for i, f := range sockets {
		t, err := newTarget(names[i], f)
		if err != nil {
			s.closeTargets()
			return nil, fmt.Errorf("bind interception: listener %s: %w", names[i], err)
		}
		s.targets = append(s.targets, t)
	}
	return s, nil
}

func newTarget(name string, f *os.File) (*target, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	// Through SyscallConn, not Fd: Fd would make the socket blocking for
	// every worker (see package handoff).
	if err := rc.Control(func(d uintptr) { fd, derr = unix.FcntlInt(d, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	t := &target{name: name, fd: fd}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	t.ino = st.Ino
	if t.typ, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err == nil {
		t.addr, err = fromSockaddr(sa)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if t.addr.family == unix.AF_INET6 {
		v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		t.v6only = v == 1
	}
	return t, nil
}

func (s *Supervisor) closeTargets() {
	for _, t := range s.targets {
		unix.Close(t.fd)
	}
	s.targets = nil
}

// Close makes Run return, at once or after the notification it is
// answering; the worker's later binds and listens fail with ENOSYS. Safe
// to call twice, and before Run.
func (s *Supervisor) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.conn.Close()
	if s.notif != nil {
		s.notif.Close()
	}
}

// Run waits for the shim's report, then answers the worker's notifications
// until Close, or until the worker and every process that inherited its
// filter have exited. It waits in the netpoller, holding no thread. On
// its way out it closes everything the supervisor held.
func (s *Supervisor) Run() {
	defer s.closeTargets()
	fd, nnp, err := s.report()
	s.conn.Close()
	if err != nil {
		s.fail(err)
		return
	}
	if fd < 0 {
		return // the shim exec'd, or died, without a word: no filter
	}
	if s.cb.Installed != nil {
		s.cb.Installed(nnp)
	}
	unix.SetNonblock(fd, true) // for the netpoller: see next
	f := os.NewFile(uintptr(fd), "seccomp-notify")
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		f.Close()
		return
	}
	s.notif = f
	s.mu.Unlock()
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n seccompNotif
		got, over := false, false
		// Readable means a notification is pending (EPOLLIN), or no
		// process uses the filter any more (EPOLLHUP). The ioctl that
		// takes a notification blocks when none is, whatever O_NONBLOCK
		// says, so poll first; the netpoller is edge-triggered, so every
		// pending one is taken before waiting again.
		err := rc.Read(func(nfd uintptr) bool {
			pfd := []unix.PollFd{{Fd: int32(nfd), Events: unix.POLLIN}}
			if k, err := unix.Poll(pfd, 0); err != nil || k == 0 {
				return err != nil && err != unix.EINTR
			}
			if pfd[0].Revents&unix.POLLIN != 0 {
				got = recv(int(nfd), &n) == nil // ENOENT: withdrawn
				return true
			}
			over = pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
			return over
		})
		if err != nil || over {
			return
		}
		if got {
			rc.Control(func(nfd uintptr) { s.handle(int(nfd), &n) })
		}
	}
}

// report reads the shim's one message: the notification descriptor, -1
// with a nil error when the shim sent none (it ended before it could), or
// why it could not load the filter.
func (s *Supervisor) report() (fd int, nnp bool, err error) {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return -1, false, nil
	}
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	}); err != nil || rerr != nil || n == 0 && oobn == 0 {
		return -1, false, nil // closed, or EOF: the shim is gone
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if got, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	return parseReport(buf[:n], fds)
}

func (s *Supervisor) fail(err error) {
	if s.failed {
		return
	}
	s.failed = true
	if s.cb.Failed != nil {
		s.cb.Failed(err)
	}
}

// handle answers one notification on nfd. Every answer it does not give
// itself is "continue": the kernel runs the system call as if nothing had
// intercepted it.
func (s *Supervisor) handle(nfd int, n *seccompNotif) {
	if testHookNotif != nil {
		testHookNotif(n.Data.Nr)
	}
	switch n.Data.Nr {
	case unix.SYS_BIND:
		inUse, cont := s.bind(nfd, n)
		if cont {
			respond(nfd, n.ID, 0, 0, true)
		}
		if inUse != "" && s.cb.InUse != nil {
			s.cb.InUse(inUse)
		}
	case unix.SYS_LISTEN:
		i := s.listen(nfd, n)
		if i < 0 {
			respond(nfd, n.ID, 0, 0, true)
		} else if s.cb.Listened != nil {
			s.cb.Listened(i)
		}
	default:
		respond(nfd, n.ID, 0, 0, true)
	}
}

// Test hooks, set only by the package's tests: testHookNotif sees the
// system call number of every notification; testHookRead runs after a
// bind's address was read from the worker and before the notification is
// checked to be still valid.
var testHookNotif, testHookRead = (func(int32))(nil), (func())(nil)

// bind handles a bind notification: it answers a bind of a listener's
// address itself, and tells Bound; otherwise it returns whether the call
// is to continue to the kernel, and the address if that is in use.
func (s *Supervisor) bind(nfd int, n *seccompNotif) (inUse string, cont bool) {
	tid := int(n.PID)
	fd := int(int32(n.Data.Args[0]))
	size := n.Data.Args[2]
	if size < 2 || size > maxSockaddr {
		return "", true // the kernel says EINVAL itself
	}
	buf := make([]byte, size)
	if err := readMem(tid, uintptr(n.Data.Args[1]), buf); err != nil {
		if !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.EFAULT) {
			s.fail(fmt.Errorf("read the worker's memory: %w", err))
		}
		return "", true
	}
	asked, err := parseSockaddr(buf)
	if err != nil {
		return "", true
	}
	if asked.family == unix.AF_UNIX && asked.path != "" && asked.path[0] != '@' {
		cwd := "/"
		if asked.path[0] != '/' {
			link, err := os.Readlink("/proc/" + strconv.Itoa(tid) + "/cwd")
			if err != nil {
				return "", true
			}
			cwd = link
		}
		asked.path = resolvePath(asked.path, cwd)
	}
	// The common case of a worker that binds often (port 0, a port of its
	// own) costs the worker one round trip and nothing more: what
	// continues needs no check that the notification is still valid,
	// since nothing is done on its behalf.
	candidate := false
	for _, t := range s.targets {
		candidate = candidate || fit(asked, t.typ, t) > noMatch
	}
	if !candidate && !s.mayCheckInUse(asked) {
		return "", true
	}
	if testHookRead != nil {
		testHookRead()
	}
	if !valid(nfd, n.ID) {
		return "", false // gone, or interrupted: nobody waits
	}
	sock, err := peerSocket(tid, fd)
	if err != nil {
		if !errors.Is(err, unix.ENOTSOCK) && !errors.Is(err, unix.EBADF) && !errors.Is(err, unix.ESRCH) {
			s.fail(fmt.Errorf("look at the socket a worker binds: %w", err))
		}
		return "", true
	}
	if !valid(nfd, n.ID) {
		return "", false
	}
	i := match(asked, sock.typ, s.targets)
	if i < 0 {
		if s.checkInUse(asked, sock.typ) {
			return asked.String(), true
		}
		return "", true
	}
	t := s.targets[i]
	if sock.ino == t.ino {
		// Already the master's: a bind that a signal interrupted after
		// the socket was put in place runs again.
		respond(nfd, n.ID, 0, 0, false)
		return "", false
	}
	if s.failed {
		return "", true
	}
	cloexec, err := fdCloexec(tid, fd)
	if err != nil || !valid(nfd, n.ID) {
		return "", true
	}
	if err := addfd(nfd, n.ID, t.fd, fd, cloexec); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", false // gone meanwhile
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
			err = fmt.Errorf("the kernel cannot put a socket into a worker (%w; Linux 5.9 can)", err)
		}
		s.fail(err)
		return "", true
	}
	respond(nfd, n.ID, 0, 0, false)
	if s.cb.Bound != nil {
		s.cb.Bound(i, asked.String())
	}
	if t.typ == unix.SOCK_DGRAM && s.cb.Listened != nil {
		// A datagram socket serves once bound: it has no listen(2).
		s.cb.Listened(i)
	}
	return "", false
}

// listen handles a listen notification: the listener whose socket the
// descriptor is, answered already, or -1 to continue.
func (s *Supervisor) listen(nfd int, n *seccompNotif) int {
	tid := int(n.PID)
	fd := int(int32(n.Data.Args[0]))
	link, err := os.Readlink("/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.Itoa(fd))
	if err != nil || !valid(nfd, n.ID) {
		return -1
	}
	ino, ok := socketInode(link)
	if !ok {
		return -1
	}
	for i, t := range s.targets {
		if t.ino == ino && t.typ == unix.SOCK_STREAM {
			// It has listened since the master bound it: the backlog
			// stays the master's.
			respond(nfd, n.ID, 0, 0, false)
			return i
		}
	}
	return -1
}

// mayCheckInUse reports whether a bind of asked, which is no listener's
// address, is one checkInUse would look up: an IP address with a port (0
// is the kernel's choice). Unix socket paths are not looked up: the
// master, often root, does not touch a path a worker names.
func (s *Supervisor) mayCheckInUse(asked sockAddr) bool {
	if asked.family == unix.AF_UNIX || asked.port == 0 {
		return false
	}
	return !s.checked[asked.String()] && len(s.checked) < maxInUseChecks
}

// checkInUse reports whether another socket already holds asked, for a
// socket of type typ, so that the bind will fail; only the first
// maxInUseChecks addresses are looked up, each once.
func (s *Supervisor) checkInUse(asked sockAddr, typ int) bool {
	if !s.mayCheckInUse(asked) {
		return false
	}
	s.checked[asked.String()] = true
	var conns []sockdiag.Conn
	var err error
	switch typ {
	case unix.SOCK_STREAM:
		conns, err = sockdiag.TCP(asked.port, sockdiag.States(sockdiag.Listen))
	case unix.SOCK_DGRAM:
		conns, err = sockdiag.UDP(asked.port)
	default:
		return false
	}
	if err != nil {
		return false
	}
	a := asked.ip.Unmap().WithZone("")
	for _, c := range conns {
		b := c.Local.Addr().Unmap().WithZone("")
		switch {
		case a == b, asked.wildcard(), b.IsUnspecified() && (a.Is4() == b.Is4() || b.Is6() && !c.V6Only):
			return true
		}
	}
	return false
}

// readMem reads len(buf) bytes at addr of thread tid's memory.
func readMem(tid int, addr uintptr, buf []byte) error {
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: addr, Len: len(buf)}}
	n, err := unix.ProcessVMReadv(tid, local, remote, 0)
	if err != nil {
		return fmt.Errorf("process_vm_readv: %w", err)
	}
	if n != len(buf) {
		return fmt.Errorf("process_vm_readv: %d of %d bytes: %w", n, len(buf), unix.EFAULT)
	}
	return nil
}

// peer describes the socket a worker binds.
type peer struct {
	typ int
	ino uint64
}

// peerSocket looks at descriptor fd of thread tid's process through a
// duplicate (pidfd_getfd): its socket type and inode.
func peerSocket(tid, fd int) (peer, error) {
	pidfd, err := unix.PidfdOpen(tid, 0)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		// Not a thread-group leader (a Go program binds from any thread;
		// Linux says EINVAL, from 6.9 on ENOENT): its process's
		// descriptors are the same.
		var tgid int
		if tgid, err = threadGroup(tid); err == nil {
			pidfd, err = unix.PidfdOpen(tgid, 0)
		}
	}
	if err != nil {
		return peer{}, fmt.Errorf("pidfd_open: %w", err)
	}
	sfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	unix.Close(pidfd)
	if err != nil {
		return peer{}, fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(sfd)
	var p peer
	if p.typ, err = unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return peer{}, err
	}
	if proto, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err == nil && p.typ == unix.SOCK_STREAM &&
		proto != 0 && proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP {
		// SCTP and the like are no TCP listener's business.
		p.typ = -1
	}
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return peer{}, err
	}
	p.ino = st.Ino
	return p, nil
}

// threadGroup reads the process (thread group) ID of thread tid.
func threadGroup(tid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Tgid:")); ok {
			return strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no Tgid", tid)
}

// fdCloexec reads whether descriptor fd of thread tid is close-on-exec,
// as its fdinfo's octal flags say.
func fdCloexec(tid, fd int) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			fl, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			if err != nil {
				return false, err
			}
			return fl&unix.O_CLOEXEC != 0, nil
		}
	}
	return false, fmt.Errorf("/proc/%d/fdinfo/%d: no flags", tid, fd)
}

// socketInode parses a /proc/PID/fd link, "socket:[INODE]".
func socketInode(link string) (uint64, bool) {
	rest, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
	return ino, err == nil
}
