package workers

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/hotcluster/hotcluster/internal/intercept"
	"github.com/hotcluster/hotcluster/internal/protocol"
)

// InterceptMode says whether a worker's own bind(2) of a --listen address
// is answered with the master's socket (see package internal/intercept).
type InterceptMode int

const (
	// InterceptAuto intercepts where the kernel and the seccomp policy
	// allow it, and falls back to the plain worker contract (fd 3…)
	// elsewhere, saying so once.
	InterceptAuto InterceptMode = iota
	// InterceptOff never intercepts: a program that binds a --listen
	// port itself gets EADDRINUSE, as it would without hotcluster.
	InterceptOff
)

// ParseInterceptMode parses "auto" or "off".
func ParseInterceptMode(s string) (InterceptMode, error) {
	switch s {
	case "auto", "":
		return InterceptAuto, nil
	case "off":
		return InterceptOff, nil
	}
	return 0, fmt.Errorf("intercept-bind %q: want auto or off", s)
}

func (m InterceptMode) String() string { return [...]string{"auto", "off"}[m] }

// startIntercepting decides, once when Run starts, whether workers get the
// filter, and says why not when the kernel or a sandbox is the reason.
func (p *Pool) startIntercepting() {
	if p.cfg.Intercept == InterceptOff || p.cfg.Sockets == nil {
		return
	}
	if err := intercept.Available(); err != nil {
		p.logf(slog.LevelInfo, nil, "bind interception off: %v; programs must take their sockets from fd 3 (LISTEN_FDS), a program that binds a --listen port itself gets EADDRINUSE", err)
		return
	}
	p.intercepting = true
}

// Events of a worker's bind and listen supervisor (see interceptFor).
type (
	interceptInstalledEvent struct {
		w          *worker
		noNewPrivs bool
	}
	interceptFailedEvent struct {
		w   *worker
		err error
	}
	boundEvent struct {
		w     *worker
		i     int
		asked string
	}
	listenedEvent struct {
		w *worker
		i int
	}
	inUseEvent struct {
		w     *worker
		asked string
	}
)

// interceptFor makes the supervisor of a worker about to start with
// sockets (its listeners): ours is the master's end of the pair, theirs
// goes to the shim. nil, nil, nil when the pool does not intercept.
func (p *Pool) interceptFor(w *worker, sockets []*os.File) (sup *intercept.Supervisor, theirs *os.File, err error) {
	if !p.intercepting || len(sockets) == 0 {
		return nil, nil, nil
	}
	ours, theirs, err := intercept.Pair()
	if err != nil {
		return nil, nil, err
	}
	sup, err = intercept.NewSupervisor(ours, p.cfg.Sockets.Names(), sockets, intercept.Callbacks{
		Installed: func(nnp bool) { p.post(interceptInstalledEvent{w, nnp}) },
		Failed:    func(err error) { p.post(interceptFailedEvent{w, err}) },
		Bound:     func(i int, asked string) { p.post(boundEvent{w, i, asked}) },
		Listened:  func(i int) { p.post(listenedEvent{w, i}) },
		InUse:     func(asked string) { p.post(inUseEvent{w, asked}) },
	})
	if err != nil {
		ours.Close()
		theirs.Close()
		return nil, nil, err
	}
	return sup, theirs, nil
}

func (e interceptInstalledEvent) handle(p *Pool) {
	if e.noNewPrivs && !p.toldNoNewPrivs {
		p.toldNoNewPrivs = true
		p.logf(slog.LevelInfo, e.w, "bind interception: workers run with no_new_privs, which seccomp requires of a process without CAP_SYS_ADMIN: a setuid or file-capability program a worker starts (sudo, su) gains no privileges; --intercept-bind off if a worker needs that")
	}
}

func (e interceptFailedEvent) handle(p *Pool) {
	if !p.toldInterceptFailed {
		p.toldInterceptFailed = true
		p.logf(slog.LevelWarn, e.w, "bind interception does not work for %s: %v; it and the workers it fails for run without it (a program that binds a --listen port itself gets EADDRINUSE; fd 3 works as ever)", e.w, e.err)
	}
}

func (e boundEvent) handle(p *Pool) {
	w := e.w
	name := p.listenerName(e.i)
	p.logf(slog.LevelDebug, w, "%s bound %s itself: it got the master's socket %s", w, e.asked, name)
	if g := p.gens[w.gen]; g != nil && g.tell("bound") {
		p.genf(slog.LevelInfo, g.num, "gen %d: worker %d (pid %d) binds %s itself: it gets the master's socket %s instead, as every worker that does (--intercept-bind)", g.num, w.slot, w.pid, e.asked, name)
	}
}

func (e inUseEvent) handle(p *Pool) {
	w := e.w
	if g := p.gens[w.gen]; g != nil && g.tell("in use "+e.asked) {
		p.genf(slog.LevelWarn, g.num, "worker g%d w%d tried to bind %s, which is not a --listen address (%s); another socket holds it, so the bind fails (EADDRINUSE)",
			w.gen, w.slot, e.asked, strings.Join(p.cfg.Sockets.Describe(), ", "))
	}
}

// handle: a worker called listen(2) on listener i's socket (for a
// datagram listener: its bind got it). Once it has on every listener, it
// is listening; under ReadyAuto a worker that says nothing on its notify
// socket is ready then (see ReadyAuto).
func (e listenedEvent) handle(p *Pool) {
	w := e.w
	if !p.alive(w) || p.cfg.Sockets == nil {
		return
	}
	n := len(p.cfg.Sockets.Names())
	if e.i >= n {
		return
	}
	if w.listening == nil {
		w.listening = make([]bool, n)
	}
	if w.listening[e.i] {
		return
	}
	w.listening[e.i] = true
	p.emit(Event{Kind: WorkerListening, Gen: w.gen, Slot: w.slot, PID: w.pid, Listener: p.listenerName(e.i)})
	for _, l := range w.listening {
		if !l {
			return
		}
	}
	if w.state == starting && p.cfg.Ready == ReadyAuto && !w.spoke && !p.speaks {
		p.becameReady(w)
	}
}

// listenerName describes listener i, e.g. web=127.0.0.1:8080.
func (p *Pool) listenerName(i int) string {
	if d := p.cfg.Sockets.Describe(); i < len(d) {
		return d[i]
	}
	return fmt.Sprintf("listener %d", i)
}

// tell reports whether what (a log line's key) is news for the
// generation, and remembers it: such lines are logged once per generation.
func (g *generation) tell(what string) bool {
	if g.told == nil {
		g.told = make(map[string]bool)
	}
	if g.told[what] || len(g.told) >= 64 {
		return false
	}
	g.told[what] = true
	return true
}

// shimIntercept is the shim's part, last before the exec and on the thread
// that execs (the filter is that thread's): load the filter if the master
// asked for it. An error means the master could not be told, and the shim
// must not exec (see intercept.Install).
func shimIntercept() error {
	v, ok := os.LookupEnv(protocol.EnvInterceptFd)
	if !ok {
		return nil
	}
	os.Unsetenv(protocol.EnvInterceptFd)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q: not a descriptor", protocol.EnvInterceptFd, v)
	}
	return intercept.Install(fd)
}
