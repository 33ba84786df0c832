package handoff

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Foreign is a socket not made by hotcluster that listens on (for UDP: is
// bound to) an address that overlaps a listener's, on the same port.
type Foreign struct {
	// Listener is the name of the listener whose address it overlaps.
	Listener string
	// Addr is its own address, e.g. 127.0.0.1:8080 or [::]:8080.
	Addr  string
	Inode uint64
	// Owners are the processes that hold it, as far as this process may
	// see; none when unknown (another user's process).
	Owners []Owner
	// Joined is set when it sits in the listener's own SO_REUSEPORT group,
	// whose selector never gives it a connection. Beside the group (another
	// address, family or IPV6_V6ONLY) the kernel may prefer it for some
	// connections: see TakesConnections.
	Joined bool
	// TakesConnections is set when the kernel may give it connections that
	// the listener's workers would otherwise get.
	TakesConnections bool
	// Since is when it was first seen.
	Since time.Time
}

// Owner is a process that holds a socket.
type Owner struct {
	PID int
	// Command is its command line, cut to 200 bytes.
	Command string
	// Instance names the hotcluster instance the process belongs to (its
	// master or one of its workers). Package handoff leaves it empty; the
	// caller may fill it in (see InUseError).
	Instance string
}

func (o Owner) String() string {
	if o.Instance != "" {
		return fmt.Sprintf("hotcluster instance %q (pid %d: %s)", o.Instance, o.PID, o.Command)
	}
	return fmt.Sprintf("pid %d (%s)", o.PID, o.Command)
}

// owners describes who holds f, for messages.
func (f *Foreign) owners() string {
	if len(f.Owners) == 0 {
		return "a process this user cannot see"
	}
	// One line per instance rather than per worker.
	var parts []string
	seen := map[string]bool{}
	for _, o := range f.Owners {
		if o.Instance != "" {
			if seen[o.Instance] {
				continue
			}
			seen[o.Instance] = true
		}
		parts = append(parts, o.String())
	}
	if len(parts) > 3 {
		parts = append(parts[:3], fmt.Sprintf("%d more", len(parts)-3))
	}
	return strings.Join(parts, ", ")
}

// InUseError reports that sockets other than hotcluster's listen on (or,
// for UDP, are bound to) an address that overlaps a listener's. Open
// returns it before it binds, and after it bound a group if one appeared
// meanwhile; it binds nothing in the first case and closes what it bound in
// the second. A master started by an upgrade takes its sockets over and is
// not checked.
type InUseError struct {
	Listener Spec
	Sockets  []*Foreign
}

func (e *InUseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen %s=%s: in use by ", e.Listener.Name, e.Listener)
	// Once per owner and address: another hotcluster instance has a socket
	// per worker on it.
	seen := map[string]bool{}
	for _, f := range e.Sockets {
		part := f.owners()
		if !strings.HasSuffix(e.Listener.Addr, f.Addr) {
			part += " on " + f.Addr
		}
		if seen[part] {
			continue
		}
		if len(seen) > 0 {
			b.WriteString("; and by ")
		}
		seen[part] = true
		b.WriteString(part)
	}
	b.WriteString("; stop it or pick another address")
	return b.String()
}

// Foreign returns the sockets not made by hotcluster found on the steered
// listeners' addresses by the last look (at the last Activate, or the last
// round of Watch), in listener order. The caller may keep the result.
func (s *Sockets) Foreign() []Foreign {
	s.mu.Lock()
	names := make([]string, 0, len(s.ls))
	for _, l := range s.ls {
		names = append(names, l.spec.Name)
	}
	s.mu.Unlock()
	s.fmu.Lock()
	defer s.fmu.Unlock()
	var out []Foreign
	for _, n := range names {
		for _, f := range s.foreign[n] {
			c := *f
			c.Owners = append([]Owner(nil), f.Owners...)
			out = append(out, c)
		}
	}
	return out
}

// Watch looks for sockets not made by hotcluster on the steered addresses
// every interval (DefaultWatchInterval if zero) until ctx ends, logging each
// new one once, loudly, and each that went away. It blocks; its caller
// owns the goroutine that runs it.
func (s *Sockets) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkForeign()
		}
	}
}

// checkForeign updates s.foreign from one look at the kernel's sockets and
// logs what changed. Looks are serialised; the owners of a socket are
// looked up once, when it first appears.
func (s *Sockets) checkForeign() {
	s.checking.Lock()
	defer s.checking.Unlock()
	type target struct {
		spec          Spec
		network, addr string
		socks         []*sock
	}
	s.mu.Lock()
	if s.closed || s.frozen {
		// Once persisted for an upgrade, the new master may add sockets
		// to the groups that this one does not know: not strangers.
		s.mu.Unlock()
		return
	}
	var ts []target
	for _, l := range s.ls {
		if l.mode == Steered {
			network := l.network
			if network == "" {
				network = l.spec.Network
			}
			ts = append(ts, target{l.spec, network, l.addr, l.all()})
		}
	}
	s.mu.Unlock()
	for _, t := range ts {
		found, err := listForeign(t.spec, t.network, t.addr, t.socks)
		if err != nil {
			continue // no socket diagnostics here: nothing to report
		}
		s.fmu.Lock()
		old := make(map[uint64]*Foreign)
		for _, f := range s.foreign[t.spec.Name] {
			old[f.Inode] = f
		}
		s.fmu.Unlock()
		var now, fresh []*Foreign
		for _, f := range found {
			if o, ok := old[f.Inode]; ok {
				now = append(now, o)
				delete(old, f.Inode)
				continue
			}
			fresh = append(fresh, f)
		}
		findOwners(fresh)
		now = append(now, fresh...)
		s.fmu.Lock()
		s.foreign[t.spec.Name] = now
		s.fmu.Unlock()
		for _, f := range fresh {
			if f.Joined {
				s.cfg.Log("listen %s: error: a socket not made by hotcluster joined %s: %s; it gets no connections", t.spec.Name, f.Addr, f.owners())
			} else if f.TakesConnections {
				s.cfg.Log("listen %s: error: a socket not made by hotcluster listens on %s, beside %s: %s; the kernel gives it connections meant for hotcluster's workers: stop it", t.spec.Name, f.Addr, t.addr, f.owners())
			} else {
				s.cfg.Log("listen %s: error: a socket not made by hotcluster listens on %s, beside %s: %s; it gets no connections for %s", t.spec.Name, f.Addr, t.addr, f.owners(), t.addr)
			}
		}
		for _, f := range old {
			s.cfg.Log("listen %s: the socket not made by hotcluster on %s (%s) is gone", t.spec.Name, f.Addr, f.owners())
		}
	}
}
