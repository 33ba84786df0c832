package e2e

// What a relay costs: connections stranded in generation 1's queue are
// relayed by the master for their life; the test then sends the same
// requests over them and over direct connections to the same workers, and
// reads the master's CPU time and RSS from /proc. It asserts what the
// relays do (every request answered by generation 2 through them); the
// figures are logged, and are the measurement of docs/benchmarks.md with
//
//	HOTCLUSTER_RELAYS=1000 go test -race=false -run TestRelayCost -v ./e2e/

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/procstat"
)

func TestRelayCost(t *testing.T) {
	t.Parallel()
	n := 50
	if s := os.Getenv("HOTCLUSTER_RELAYS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 2000 {
			t.Fatalf("HOTCLUSTER_RELAYS=%q: want 1 to 2000", s)
		}
		n = v
	}
	const rounds = 5
	// One worker: one socket per generation, so one burst to wait for.
	m := startOperated(t, "never-accept-gen1", "--workers", "1", "--quiet-timeout", "200ms", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitLine(0, `NOT ACCEPTING`)
	m.waitReady(1)
	before, err := procstat.Read(m.pid)
	if err != nil {
		t.Fatal(err)
	}
	cs := dialQueued(t, addr, n)
	m.signal(syscall.SIGHUP)
	m.waitLine(0, fmt.Sprintf(`listen web: relayed %d connections left in the accept queue`, n))
	assertAnswered(t, cs, 2)
	relaying, err := procstat.Read(m.pid)
	if err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, m.env); st.Rescue == nil || st.Rescue.Relays != n {
		t.Fatalf("status rescue %+v: want %d relays", st.Rescue, n)
	}

	direct := make([]net.Conn, n)
	for i := range direct {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		direct[i] = c
	}
	run := func(conns []net.Conn) (lat []time.Duration, cpu time.Duration) {
		t.Helper()
		s0, _ := procstat.Read(m.pid)
		brs := make([]*bufio.Reader, len(conns))
		for i, c := range conns {
			brs[i] = bufio.NewReader(c)
		}
		for r := 0; r < rounds; r++ {
			for i, c := range conns {
				start := time.Now()
				c.SetDeadline(start.Add(10 * time.Second))
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(brs[i], nil)
				if err != nil {
					t.Fatalf("connection %d, round %d: %v", i, r, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
				if !servedBy(string(b), 2) {
					t.Fatalf("connection %d: answer %q, want gen 2's", i, b)
				}
			}
		}
		s1, _ := procstat.Read(m.pid)
		return lat, s1.CPUTime - s0.CPUTime
	}
	pct := func(l []time.Duration, p float64) time.Duration {
		slices.Sort(l)
		return l[min(len(l)-1, int(float64(len(l))*p))]
	}
	dl, dcpu := run(direct)
	rl, rcpu := run(cs)
	t.Logf("master with %d relays: RSS %.1f MiB (%.1f MiB before them, %.1f KiB per relay)", n,
		float64(relaying.RSS)/(1<<20), float64(before.RSS)/(1<<20), float64(relaying.RSS-before.RSS)/1024/float64(n))
	t.Logf("direct:  %d requests, p50 %v, p99 %v, master CPU %v", len(dl), pct(dl, 0.5), pct(dl, 0.99), dcpu)
	t.Logf("relayed: %d requests, p50 %v, p99 %v, master CPU %v (%.1f µs per request)", len(rl), pct(rl, 0.5), pct(rl, 0.99), rcpu,
		float64(rcpu.Microseconds())/float64(len(rl)))
}
