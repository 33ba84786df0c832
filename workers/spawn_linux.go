package workers

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/intercept"
	"github.com/hotcluster/hotcluster/internal/protocol"
	"github.com/hotcluster/hotcluster/internal/safedir"
	"golang.org/x/sys/unix"
)

// groupProcess is a worker process the pool started: it leads a process
// group of its own.
type groupProcess struct {
	pid    int
	mu     sync.Mutex
	exited bool // set by reap before the PID can be reused
}

func (g *groupProcess) signal(sig syscall.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.exited {
		unix.Kill(-g.pid, sig)
	}
}

func (g *groupProcess) holds(inodes []uint64) ([]bool, bool) { return heldSockets(g.pid, inodes) }
func (g *groupProcess) gone() bool                           { return exited(g.pid) }

// spawn starts a worker and the goroutines that own it: one waits for the
// process (without holding a thread: see reap); two copy its output; one
// reads its notify socket. They report to the pool through p.post and end
// on their own once the process exited.
func (p *Pool) spawn(s spawnSpec) (*worker, error) {
	defer closeFiles(s.files)
	w := &worker{gen: s.gen, slot: s.slot}
	p.seq++
	ns, err := p.listenNotify(fmt.Sprintf("g%d-w%d-%d", s.gen, s.slot, p.seq))
	if err != nil {
		return nil, fmt.Errorf("start gen %d worker %d: notify socket: %w", s.gen, s.slot, err)
	}
	notify := ns.conn

	var pipes [4]*os.File // stdout r, w; stderr r, w
	for i := 0; i < 4; i += 2 {
		if pipes[i], pipes[i+1], err = os.Pipe(); err != nil {
			ns.close(p.notifyDir)
			closeFiles(pipes[:])
			return nil, fmt.Errorf("start gen %d worker %d: %w", s.gen, s.slot, err)
		}
	}

	// The message channel: our end non-blocking, so that closing it ends
	// its reader.
	var ipcChild, ipcOurs *os.File
	if s.ipc != IPCOff {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			ns.close(p.notifyDir)
			closeFiles(pipes[:])
			return nil, fmt.Errorf("start gen %d worker %d: message channel: %w", s.gen, s.slot, err)
		}
		unix.SetNonblock(fds[0], true)
		ipcOurs, ipcChild = os.NewFile(uintptr(fds[0]), "ipc"), os.NewFile(uintptr(fds[1]), "ipc")
	}
	extra := s.files
	if ipcChild != nil {
		extra = append(append([]*os.File(nil), s.files...), ipcChild)
	}
	argv := append([]string{shimArg0, s.cmd.Path}, s.cmd.Args...)
	env := p.workerEnv(s, p.notifyDir.Join(ns.name))
	// The supervisor of its bind and listen calls, if the pool intercepts;
	// the shim gets its end of the pair after everything the worker sees,
	// and closes it before the exec.
	sup, icptChild, err := p.interceptFor(w, s.files)
	if err != nil {
		p.logf(slog.LevelWarn, w, "gen %d worker %d: %v; it starts without bind interception", s.gen, s.slot, err)
	}
	if icptChild != nil {
		env = append(env, protocol.EnvInterceptFd+"="+strconv.Itoa(protocol.ListenFdsStart+len(extra)))
		extra = append(append([]*os.File(nil), extra...), icptChild)
	}
	pidfd := -1
	attr := &syscall.ProcAttr{
		Dir: p.cfg.Dir,
		Env: env,
		Sys: &syscall.SysProcAttr{
			// Its own process group: a terminal's Ctrl-C reaches only the
			// master, which drains workers in order, and a stop signal
			// reaches the worker's own children too.
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: p.cfg.Credential,
			// A pidfd lets reap wait for the exit in the netpoller.
			PidFD: &pidfd,
		},
	}
	if ipcOurs != nil {
		w.outbox = make(chan []byte, outboxSize)
	}
	notifyDone, notifyClosing := make(chan struct{}), make(chan struct{})
	icptDone := make(chan struct{})
	if sup != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(icptDone)
			sup.Run()
		}()
	} else {
		close(icptDone)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(notifyDone)
		if ipcOurs != nil {
			ipcDone, writerDone, stop := make(chan struct{}), make(chan struct{}), make(chan struct{})
			go func() {
				defer close(ipcDone)
				p.readIPC(w, ipcOurs)
			}()
			go func() {
				defer close(writerDone)
				p.writeIPC(w, ipcOurs, stop)
			}()
			// Closing the file wakes a write blocked on a full channel.
			defer func() { close(stop); ipcOurs.Close(); <-ipcDone; <-writerDone }()
		}
		p.readNotify(w, notify, notifyClosing)
	}()

	var pid int
	err = p.forker.run(func() error {
		start := func(cgroupFD int) (int, error) {
			a, sys := *attr, *attr.Sys
			if cgroupFD >= 0 {
				// clone3 puts the shim in the worker's cgroup before it
				// runs a single instruction.
				sys.UseCgroupFD, sys.CgroupFD = true, cgroupFD
			}
			a.Sys = &sys
			return startProcess(argv, &a, pipes[1], pipes[3], extra)
		}
		var err error
		if l := p.cfg.Leftovers; l != nil {
			pid, err = l.Start(s.gen, s.slot, start)
		} else {
			pid, err = start(-1)
		}
		return err
	})
	pipes[1].Close()
	pipes[3].Close()
	if ipcChild != nil {
		ipcChild.Close()
	}
	if icptChild != nil {
		icptChild.Close()
	}
	if err != nil {
		if sup != nil {
			sup.Close()
		}
		<-icptDone
		close(notifyClosing)
		notify.Close()
		<-notifyDone
		ns.close(p.notifyDir)
		pipes[0].Close()
		pipes[2].Close()
		return nil, fmt.Errorf("start gen %d worker %d: %w", s.gen, s.slot, err)
	}
	w.pid = pid
	proc := &groupProcess{pid: w.pid}
	w.proc = proc
	w.started = time.Now()
	var outputs sync.WaitGroup
	outputs.Add(2)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.reap(w, proc, pidfd, ns, notifyClosing, notifyDone, pipes[0], pipes[2], &outputs, sup, icptDone)
	}()
	from := Line{Gen: s.gen, Slot: s.slot, PID: pid}
	go func() { defer outputs.Done(); copyLines(pipes[0], p.cfg.Lines, withStream(from, Stdout), &w.tail) }()
	go func() { defer outputs.Done(); copyLines(pipes[2], p.cfg.Lines, withStream(from, Stderr), &w.tail) }()
	return w, nil
}

// startProcess starts the shim with stdin on /dev/null, stdout and stderr
// on the given pipes' write ends and extra on fds 3…, and returns its PID.
// It uses syscall.StartProcess rather than os/exec, whose os.Process keeps
// a pidfd of its own beside the one reap waits on: a descriptor more per
// worker, 8,192 of them during a reload of 4,096 workers. The caller closes
// the files once it returns.
func startProcess(argv []string, attr *syscall.ProcAttr, stdout, stderr *os.File, extra []*os.File) (int, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	// Fd makes the pipes' write ends blocking, as a child's stdout and
	// stderr must be; the sockets among extra are looked at through
	// SyscallConn, which leaves their O_NONBLOCK alone (see package
	// handoff).
	attr.Files = []uintptr{null.Fd(), stdout.Fd(), stderr.Fd()}
	for _, f := range extra {
		fd, err := rawFd(f)
		if err != nil {
			return 0, err
		}
		attr.Files = append(attr.Files, fd)
	}
	pid, _, err := syscall.StartProcess(selfExe, argv, attr)
	// The files must stay open until the fork has duplicated them.
	runtime.KeepAlive(extra)
	return pid, err
}

// rawFd returns f's descriptor without changing its flags.
func rawFd(f *os.File) (uintptr, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd uintptr
	if err := rc.Control(func(d uintptr) { fd = d }); err != nil {
		return 0, err
	}
	return fd, nil
}

// outputGrace bounds how long a dead worker's output is read: a process
// that left its group can hold the pipes open forever.
const outputGrace = 2 * time.Second

// reap waits for the worker to exit, kills what is left of its process
// group, collects its last output, stops its bind and listen supervisor
// (sup, if any, whose goroutine closes icptDone) and reports the exit to
// the pool.
func (p *Pool) reap(w *worker, proc *groupProcess, pidfd int, ns *notifySock, notifyClosing chan<- struct{}, notifyDone <-chan struct{}, stdout, stderr *os.File, outputs *sync.WaitGroup, sup *intercept.Supervisor, icptDone <-chan struct{}) {
	// Wait without reaping first, so that the worker's PID, and so its
	// process group ID, cannot be reused while the group is killed.
	waitExited(w.pid, pidfd)
	proc.mu.Lock()
	proc.exited = true
	// Children it left in its group would hold the listening sockets and
	// its output pipes: the "address already in use" orphans.
	unix.Kill(-w.pid, unix.SIGKILL)
	proc.mu.Unlock()
	// What left the group (its cgroup, the orphans that came back to the
	// master) goes too, while the PID is still the worker's.
	if l := p.cfg.Leftovers; l != nil {
		l.Exited(w.gen, w.slot, w.pid)
	}
	var ws syscall.WaitStatus
	var err error
	for {
		_, err = syscall.Wait4(w.pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	status := &ws
	if err != nil {
		status = nil
		err = fmt.Errorf("wait: %w", err)
	}

	done := make(chan struct{})
	go func() { outputs.Wait(); close(done) }()
	t := time.NewTimer(outputGrace)
	select {
	case <-done:
	case <-t.C:
		stdout.Close()
		stderr.Close()
		<-done
	}
	t.Stop()
	stdout.Close()
	stderr.Close()
	// The supervisor and the notify reader must be done before the exit
	// is reported: the pool stops reading events once every worker has
	// exited. A process that left the worker's group and still uses the
	// filter gets ENOSYS for its binds from now on.
	if sup != nil {
		sup.Close()
	}
	<-icptDone
	close(notifyClosing)
	ns.conn.Close()
	<-notifyDone
	ns.close(p.notifyDir)
	p.post(exitEvent{w: w, err: err, status: status})
}

// waitExited returns once process pid has exited, leaving it to be reaped.
// With a pidfd the wait is in the netpoller and holds no thread; a
// blocking waitid would hold one per worker. Without (a kernel before 5.3,
// or a sandbox that refuses clone3), it is that blocking waitid.
func waitExited(pid, pidfd int) {
	if pidfd >= 0 {
		// Non-blocking, so that os.NewFile puts it in the netpoller: a
		// pidfd is readable once its process has exited.
		if unix.SetNonblock(pidfd, true) == nil {
			f := os.NewFile(uintptr(pidfd), "pidfd")
			defer f.Close()
			if rc, err := f.SyscallConn(); err == nil {
				var werr error
				err = rc.Read(func(fd uintptr) bool {
					var info unix.Siginfo
					werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
					// Linux zeroes info when nothing is waitable yet.
					return werr != nil || info.Signo != 0
				})
				if err == nil && werr == nil {
					return
				}
			}
		} else {
			unix.Close(pidfd)
		}
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// notifySock is a worker's notify socket: the master's end, and the file
// that the worker sends to.
type notifySock struct {
	conn *net.UnixConn
	name string // in the notify directory
	id   safedir.FileID
}

// listenNotify binds a worker's notify socket, name, in the notify
// directory: mode 0600 from the start, and with Credential given to the
// workers' user through the file's descriptor, never by path (a chown by
// path follows a symlink swapped in under it, to any file of root's).
func (p *Pool) listenNotify(name string) (*notifySock, error) {
	d := p.notifyDir
	fd, id, err := d.BindUnix(name, unix.SOCK_DGRAM, 0o600)
	if err != nil {
		return nil, err
	}
	ns := &notifySock{name: name, id: id}
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f) // a duplicate, in the netpoller
	f.Close()
	if err == nil {
		ns.conn = c.(*net.UnixConn)
		if cr := p.cfg.Credential; cr != nil {
			// The worker connects to its notify socket as its own user.
			err = d.Chown(name, id, int(cr.Uid), int(cr.Gid))
		}
	}
	if err != nil {
		ns.close(d)
		return nil, err
	}
	return ns, nil
}

// close closes the master's end, if still open, and removes the file if it
// is still the one bound.
func (ns *notifySock) close(d *safedir.Dir) {
	if ns.conn != nil {
		ns.conn.Close()
	}
	d.RemoveIfSame(ns.name, ns.id)
}

// readNotify forwards the worker's notify datagrams until the socket is
// closed by reap, at most notifyRate a second: a worker that floods its
// socket then waits in its own sendmsg once the socket's queue (net.unix.
// max_dgram_qlen datagrams) is full, and costs the master a bounded share
// of a core instead of all of it. The wait ends early when reap closes the
// socket.
func (p *Pool) readNotify(w *worker, c *net.UnixConn, closing <-chan struct{}) {
	buf := make([]byte, 4096)
	lim := newBucket(notifyRate, notifyBurst)
	t := time.NewTimer(0)
	<-t.C
	defer t.Stop()
	for {
		if d := lim.wait(time.Now()); d > 0 {
			// Not a read deadline: a datagram is read only once a token
			// is there for it.
			t.Reset(d)
			select {
			case <-t.C:
			case <-closing:
				return
			}
		}
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		lim.take(time.Now())
		for _, line := range notifyLines(buf[:n]) {
			p.post(notifyEvent{w: w, msg: line})
		}
	}
}

// armParentDeath makes the calling thread's process get SIGKILL when the
// thread that forked it ends (see ExecShim).
func armParentDeath() error {
	return unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
}

// readIPC handles a worker's messages until its channel closes: "ready" is
// READY=1; the others go to the loop, at most a bucket's worth at a time,
// so that a flood from one worker cannot crowd out the rest.
func (p *Pool) readIPC(w *worker, c *os.File) {
	lim := newBucket(ipcRate, ipcBurst)
	dropping := false
	readIPC(c, func(m ipcMessage) {
		if m.ready {
			p.post(notifyEvent{w: w, msg: protocol.NotifyReady})
			return
		}
		if !lim.take(time.Now()) {
			if !dropping {
				p.logf(slog.LevelWarn, w, "%s: message channel: more than %d messages a second; dropping until it slows down", w, ipcRate)
				dropping = true
			}
			return
		}
		dropping = false
		p.post(messageEvent{w: w, msg: m})
	}, func(err error) {
		p.logf(slog.LevelWarn, w, "%s: message channel: %v", w, err)
	})
	p.post(disconnectEvent{w})
}

// writeIPC writes what the pool queues for the worker until stop. A worker
// that does not read its channel costs a message per ipcWriteTimeout, not
// a blocked master.
func (p *Pool) writeIPC(w *worker, c *os.File, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case m := <-w.outbox:
			c.SetWriteDeadline(time.Now().Add(ipcWriteTimeout))
			if _, err := c.Write(m); err != nil {
				select {
				case <-stop:
					return
				default:
				}
				p.logf(slog.LevelWarn, w, "%s: message channel: %v; message dropped", w, err)
			}
		}
	}
}
