package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

var slotAnswerRx = regexp.MustCompile(`gen=(\d+) worker=(\d+)`)

// slotCounts sends n requests, each on a new connection, and counts the
// answers per "gen/worker".
func slotCounts(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	res, err := loadgen.Run(t.Context(), loadgen.Config{
		Addr: addr, Clients: 4, MaxRequests: n, Duration: testTimeout,
		OnResponse: func(_ int, body []byte) {
			if sm := slotAnswerRx.FindSubmatch(body); sm != nil {
				mu.Lock()
				got[string(sm[1])+"/"+string(sm[2])]++
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNoFailures(t, res)
	return got
}

// With the eBPF selector each worker slot has a listening socket of its
// own (fd 3 of each worker is another socket), the kernel's flow hash
// spreads new connections over them, and scaling down and reloading under
// load lose nothing: the slots that go stop getting connections before
// their workers stop accepting.
func TestSocketPerSlot(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "4", "--listen", "web=127.0.0.1:0")
	if _, i := m.waitLine(0, `listening on .* as web \(steered, ebpf`); i < 0 {
		t.Fatal("no listening line")
	}
	if m.count(`as web \(steered, ebpf`) == 0 {
		t.Skip("a socket per slot needs the eBPF selector (root or CAP_BPF): " + m.output()[0])
	}
	m.waitLine(0, `as web \(steered, ebpf, a socket per worker\)`)
	m.waitReady(1)
	addr := m.listenAddr("web")

	// Which listening socket each worker holds: the inodes of the
	// listening sockets on the port (/proc/net/tcp) that are among its
	// descriptors. The library moves fd 3 elsewhere, so look at them all.
	listening := listeningInodes(t, addr)
	holder := map[string]string{}
	for slot := 0; slot < 4; slot++ {
		workerPID(m, 1, slot)
	}
	for w, pid := range workerPIDs(m, 1) {
		var mine []string
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
			if ino, ok := strings.CutPrefix(target, "socket:["); ok && listening[strings.TrimSuffix(ino, "]")] {
				mine = append(mine, target)
			}
		}
		if len(mine) != 1 {
			t.Fatalf("worker %s holds listening sockets %v of the port, want one", w, mine)
		}
		if prev, ok := holder[mine[0]]; ok {
			t.Fatalf("workers %s and %s both hold %s, want a socket per slot", prev, w, mine[0])
		}
		holder[mine[0]] = w
	}
	if len(holder) != 4 {
		t.Fatalf("the workers' sockets: %v, want 4", holder)
	}

	// 400 connections over 4 sockets by a uniform hash: fewer than 40 on
	// one has a probability under 1e-9.
	got := slotCounts(t, addr, 400)
	for w := 0; w < 4; w++ {
		if got["1/"+strconv.Itoa(w)] < 40 {
			t.Fatalf("connections per gen/worker %v, want each of the 4 workers to have about 100", got)
		}
	}

	stop := load(t, loadgen.Config{Addr: addr, Clients: 4, Timeout: 10 * time.Second})
	m.signal(syscall.SIGTTOU)
	m.waitLine(0, `gen 1 worker 3 \(pid \d+\) drained`)
	m.reload(2)
	m.waitDrained(1)
	assertNoFailures(t, stop())

	got = slotCounts(t, addr, 300)
	for w := 0; w < 3; w++ {
		if got["2/"+strconv.Itoa(w)] < 30 {
			t.Fatalf("after scaling to 3 and a reload: connections per gen/worker %v, want each of gen 2's 3 workers to have about 100", got)
		}
	}
	if n := got["2/0"] + got["2/1"] + got["2/2"]; n != 300 {
		t.Fatalf("after scaling to 3 and a reload: connections per gen/worker %v, want all 300 on gen 2's workers 0-2", got)
	}
}

// listeningInodes returns the inodes of the IPv4 TCP sockets listening on
// addr's port, from /proc/net/tcp.
func listeningInodes(t *testing.T, addr string) map[string]bool {
	t.Helper()
	_, port, _ := strings.Cut(addr, ":")
	p, _ := strconv.Atoi(port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ... inode (field 9)
		if len(f) > 9 && f[3] == "0A" && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", p)) {
			out[f[9]] = true
		}
	}
	return out
}

// A slot whose worker is gone gets no connections: after its slot is given
// up, every new connection is served by the worker left, none waits in the
// dead slot's socket.
func TestSocketPerSlotSkipsADeadSlot(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "lib", "--workers", "2", "--max-restarts", "1", "--listen", "web=127.0.0.1:0")
	m.waitLine(0, `listening on .* as web \(steered`)
	if m.count(`as web \(steered, ebpf`) == 0 {
		t.Skip("a socket per slot needs the eBPF selector (root or CAP_BPF): " + m.output()[0])
	}
	m.waitReady(1)
	addr := m.listenAddr("web")
	pid := workerPID(m, 1, 1)
	syscall.Kill(pid, syscall.SIGKILL)
	_, i := m.waitLine(0, `worker 1 \(pid \d+\) exited: .*respawning`)
	sm, i := m.waitLine(i, `^\[g1 w1\] CONTRACT pid=(\d+)`)
	second, _ := strconv.Atoi(sm[1])
	if second == pid {
		t.Fatalf("worker 1 was not respawned (pid %d)", pid)
	}
	syscall.Kill(second, syscall.SIGKILL)
	m.waitLine(i, `worker 1 \(pid \d+\) exited: .*given up`)

	got := slotCounts(t, addr, 100)
	if got["1/0"] != 100 {
		t.Fatalf("with slot 1 given up: answers per gen/worker %v, want all 100 from worker 0", got)
	}
}
