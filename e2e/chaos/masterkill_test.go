//go:build chaos

package chaos

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestMasterSIGKILL kills the master with SIGKILL while it has three
// generations at once (one draining that ignores SIGTERM, one serving, one
// starting that never gets ready) under load: every worker dies with it
// (parent-death signal) and the port can be bound again.
func TestMasterSIGKILL(t *testing.T) {
	t.Parallel()
	n := *flagWorkers
	f := record(t, fmt.Sprintf("SIGKILL of the master with 3 generations alive: draining (ignores SIGTERM), serving, starting (never ready); %d workers each, %d clients", n, *flagClients))
	// Long timeouts: nothing but the master's death may end these workers.
	m := startMaster(t, n, modeIgnoreTerm, "--ready", "notify", "--ready-timeout", "10m", "--drain-timeout", "10m")
	l := startLoad(t, m.addr)

	m.setMode(modeServe)
	from := m.next()
	m.signal(syscall.SIGHUP)
	m.waitLine(from, `^hotcluster: gen 2 ready in `)
	m.setMode(modeHang)
	from = m.next()
	m.signal(syscall.SIGHUP)
	at := from
	for i := 0; i < n; i++ {
		_, at = m.waitLine(at, `^\[g3 w\d+\] stuck before ready$`)
	}
	var group []proc
	if !poll(*flagTimeout, func() bool {
		group = children(m.pid)
		return len(group) == 3*n
	}) {
		t.Fatalf("%d workers before the kill, want %d (3 generations)", len(group), 3*n)
	}
	gens := map[int]int{}
	for _, p := range group {
		gens[m.genOf(p.pid)]++
	}
	if gens[1] != n || gens[2] != n || gens[3] != n {
		t.Fatalf("workers by generation %v, want %d of each of 1, 2, 3", gens, n)
	}
	master, err := readStat(m.pid)
	if err != nil {
		t.Fatal(err)
	}
	group = append(group, proc{m.pid, master.startTime})

	killed := time.Now()
	m.signal(syscall.SIGKILL)
	// Dead first (a zombie runs nothing and holds no descriptor), then
	// reaped by init, which here takes its time.
	var running []proc
	if !poll(*flagTimeout, func() bool {
		running = running[:0]
		for _, p := range group {
			if st, err := readStat(p.pid); err == nil && st.startTime == p.startTime && st.state != 'Z' {
				running = append(running, p)
			}
		}
		return len(running) == 0
	}) {
		t.Fatalf("%d of %d processes still running %s after the master's SIGKILL: %v", len(running), len(group), *flagTimeout, running)
	}
	allDead := time.Since(killed)
	var left []proc
	if !poll(*flagTimeout, func() bool {
		left = left[:0]
		for _, p := range group {
			if p.exists() {
				left = append(left, p)
			}
		}
		return len(left) == 0
	}) {
		t.Fatalf("%d of %d processes still there %s after the master's SIGKILL: %v", len(left), len(group), *flagTimeout, left)
	}
	allGone := time.Since(killed)
	if others := groupPIDs(m.nonce); len(others) > 0 {
		t.Errorf("processes of the group not seen before still alive: %v", others)
	}
	res := l.stop()
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		t.Errorf("bind %s after the master died: %v", m.addr, err)
	} else {
		ln.Close()
	}

	f.add(t, "processes at the kill", fmt.Sprintf("1 master + %d workers", len(group)-1))
	f.add(t, "all dead after", allDead.Round(time.Millisecond).String())
	f.add(t, "all gone from the process table (reaped by init) after", allGone.Round(time.Millisecond).String())
	f.add(t, "port bound again", err == nil)
	f.add(t, "requests (failures expected once the master is gone)", fmt.Sprintf("%d, %d failed", res.Requests, res.Failures))
	f.outcome(fmt.Sprintf("all %d workers of the three generations died with the master; no process left; %s bound again", len(group)-1, m.addr))
}
