package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// server is either a hotcluster master with its workers or a group of bare
// hello processes, all serving one loopback address.
type server struct {
	name   string
	addr   string
	port   int
	master *proc   // nil for bare
	procs  []*proc // what the driver started: the master, or every bare hello
	pids   map[int]bool
}

// freshAddr returns a loopback address on a port that was free a moment ago,
// that this driver has not used before, and that no TCP socket (in any state,
// TIME_WAIT included) uses. Another program could take it before the server
// binds; the server then fails to start and the scenario reports that.
func (b *bench) freshAddr() (string, int, error) {
	const tries = 50
	for range tries {
		port, err := freePort()
		if err != nil {
			return "", 0, err
		}
		if b.ports[port] {
			continue
		}
		n, err := socketsOn(port)
		if err != nil {
			return "", 0, err
		}
		if n.total > 0 {
			continue
		}
		if b.ports == nil {
			b.ports = map[int]bool{}
		}
		b.ports[port] = true
		return "127.0.0.1:" + strconv.Itoa(port), port, nil
	}
	// After a run with many client addresses (-sources), TIME_WAIT
	// sockets may sit on nearly every port of the ephemeral range, which
	// is where the kernel's free ports come from; below it only servers
	// bind.
	for port := belowEphemeral; port < belowEphemeral+belowTries; port++ {
		if b.ports[port] {
			continue
		}
		if n, err := socketsOn(port); err != nil || n.total > 0 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		if b.ports == nil {
			b.ports = map[int]bool{}
		}
		b.ports[port] = true
		return "127.0.0.1:" + strconv.Itoa(port), port, nil
	}
	return "", 0, fmt.Errorf("no fresh loopback port in %d tries, nor in %d ports from %d", tries, belowTries, belowEphemeral)
}

// The ports freshAddr falls back to: below Linux's default ephemeral range
// (32768-60999).
const (
	belowEphemeral = 20000
	belowTries     = 2000
)

// startHotcluster starts hotcluster on addr (from freshAddr) without waiting
// for it; see waitServing.
func (b *bench) startHotcluster(name, addr string, port int, extraFlags, helloArgs []string) (*server, error) {
	argv := []string{b.hotcluster, "run", "--listen", "web=" + addr, "--workers", strconv.Itoa(b.workers)}
	argv = append(argv, b.hotclusterFlags...)
	argv = append(argv, extraFlags...)
	argv = append(argv, "--", b.hello)
	argv = append(argv, b.helloFlags...)
	argv = append(argv, helloArgs...)
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	p, err := startProc(name, b.logDir, argv)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, addr: addr, port: port, master: p, procs: []*proc{p}, pids: map[int]bool{}}
	b.track(s)
	return s, nil
}

// startWarm starts hotcluster on a fresh loopback port and waits until it
// serves, after the usual warm-up. A server comes back whenever its master
// started, also with an error: the caller stops it.
func (b *bench) startWarm(name string, extraFlags, helloArgs []string) (*server, error) {
	addr, port, err := b.freshAddr()
	if err != nil {
		return nil, err
	}
	s, err := b.startHotcluster(name, addr, port, extraFlags, helloArgs)
	if err == nil {
		_, err = b.waitServing(s, allModes[0])
	}
	return s, err
}

// startBare starts b.workers hello -reuseport processes on addr without
// waiting for them; see waitServing.
func (b *bench) startBare(name, addr string, port int) (*server, error) {
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	s := &server{name: name, addr: addr, port: port, pids: map[int]bool{}}
	b.track(s)
	for i := range b.workers {
		p, err := startProc(fmt.Sprintf("%s-%d", name, i), b.logDir, append([]string{b.hello, "-addr", addr, "-reuseport"}, b.helloFlags...))
		if err != nil {
			return s, err
		}
		s.procs = append(s.procs, p)
	}
	return s, nil
}

// alive returns an error if any process the driver started for s has exited.
func (s *server) alive() error {
	for _, p := range s.procs {
		if err := p.Exited(); err != nil {
			return err
		}
	}
	return nil
}

// stop stops what the driver started for s, then makes sure that no worker
// seen answering outlives it.
func (s *server) stop(grace time.Duration, helloExe string) error {
	var errs []error
	for _, p := range s.procs {
		errs = append(errs, p.Stop(grace))
	}
	errs = append(errs, reapLeftovers(s.pids, helloExe, killWait))
	return errors.Join(errs...)
}

// waitServing waits, up to b.readyTimeout, until s answers (and, for bare
// hellos, until every one of them listens), then warms it up for b.warmup
// with connections of mode warm, recording the worker PIDs that answer. It
// returns the warm-up's result, which is not part of any measurement.
func (b *bench) waitServing(s *server, warm connMode) (*loadgen.Result, error) {
	deadline := time.Now().Add(b.readyTimeout)
	last := "none"
	for {
		if err := s.alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no answer from %s within %v (last attempt: %s); log %s",
				s.name, s.addr, b.readyTimeout, last, s.procs[0].LogPath)
		}
		obs := newObserver(1)
		r, err := loadgen.Run(b.ctx, loadgen.Config{Addr: s.addr, MaxRequests: 1, Timeout: time.Second, OnResponse: obs.observe})
		if err != nil {
			return nil, err
		}
		if r.Failures == 0 && r.Requests == 1 {
			maps.Copy(s.pids, obs.merge().pids)
			// Bare hellos bind one SO_REUSEPORT socket each: wait for all,
			// so that none misses the start of the load.
			if s.master != nil {
				break
			}
			n, err := socketsOn(s.port)
			if err != nil {
				return nil, err
			}
			if n.listen >= len(s.procs) {
				break
			}
			last = fmt.Sprintf("%d of %d listening", n.listen, len(s.procs))
		} else {
			last = fmt.Sprint(r.Errors)
		}
		if err := sleep(b.ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	obs := newObserver(b.clients)
	r, err := loadgen.Run(b.ctx, loadgen.Config{Addr: s.addr, Clients: b.clients, KeepAlive: warm.keepAlive, Duration: b.warmup, OnResponse: obs.observe})
	if err != nil {
		return nil, err
	}
	maps.Copy(s.pids, obs.merge().pids)
	if r.Failures > 0 {
		return r, fmt.Errorf("%s: %d of %d warm-up requests failed: %v", s.name, r.Failures, r.Requests, r.Errors)
	}
	return r, s.alive()
}

// observer parses hello's answers, "hello pid=<pid> gen=<gen> worker=<id>\n",
// with one slot per client so that OnResponse needs no lock.
type observer struct{ slots []seen }

type seen struct {
	pids           map[int]bool
	minGen, maxGen int
	bad            int
	first          map[int]time.Time // when an answer from each generation was first seen
}

func newObserver(clients int) *observer {
	o := &observer{slots: make([]seen, clients)}
	for i := range o.slots {
		o.slots[i].pids = map[int]bool{}
		o.slots[i].first = map[int]time.Time{}
	}
	return o
}

func (o *observer) observe(client int, body []byte) {
	s := &o.slots[client]
	pid, gen := -1, -1
	for f := range bytes.FieldsSeq(body) {
		if v, ok := bytes.CutPrefix(f, []byte("pid=")); ok {
			pid, _ = strconv.Atoi(string(v))
		} else if v, ok := bytes.CutPrefix(f, []byte("gen=")); ok {
			gen, _ = strconv.Atoi(string(v))
		}
	}
	if pid <= 0 {
		s.bad++
		return
	}
	s.pids[pid] = true
	if _, ok := s.first[gen]; !ok && gen >= 0 {
		s.first[gen] = time.Now()
	}
	if gen >= 0 {
		if s.minGen == 0 || gen < s.minGen {
			s.minGen = gen
		}
		s.maxGen = max(s.maxGen, gen)
	}
}

// firstSeen returns when an answer from each generation was first seen, by
// any client; call it only after the run has returned.
func (o *observer) firstSeen() map[int]time.Time {
	all := map[int]time.Time{}
	for _, s := range o.slots {
		for g, at := range s.first {
			if cur, ok := all[g]; !ok || at.Before(cur) {
				all[g] = at
			}
		}
	}
	return all
}

// merge combines the slots; call it only after the run has returned.
func (o *observer) merge() seen {
	all := seen{pids: map[int]bool{}}
	for _, s := range o.slots {
		maps.Copy(all.pids, s.pids)
		all.bad += s.bad
		if s.minGen != 0 && (all.minGen == 0 || s.minGen < all.minGen) {
			all.minGen = s.minGen
		}
		all.maxGen = max(all.maxGen, s.maxGen)
	}
	return all
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func hup(pid int) error { return syscall.Kill(pid, syscall.SIGHUP) }
