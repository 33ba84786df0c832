package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child"
)

func init() { roles.Register("never-accept-gen1-plain", roleNeverAcceptGen1Plain) }

// roleNeverAcceptGen1Plain: generation 1 never accepts; later generations
// serve hello with a plain http.Server.Shutdown at SIGTERM.
func roleNeverAcceptGen1Plain() int {
	if child.Generation() == 1 {
		return roleNeverAcceptGen1()
	}
	return rolePlain()
}

// A relay lives across reloads and a binary upgrade: connections stranded
// in generation 1's queue are relayed by the master (for their life, as
// they were queued); a client keeps sending requests on each, one after
// the other, while the relay's upstream worker is drained by a reload (the
// relay goes on to the new generation at a request boundary) and while the
// master is upgraded (the old master hands the relays to the new one).
// No request fails and the new master counts the relays it adopted.
func TestRelaysCrossReloadAndUpgrade(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "never-accept-gen1-plain", "--workers", "1", "--quiet-timeout", "200ms", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitLine(0, `NOT ACCEPTING`)
	m.waitReady(1)
	const n = 4
	cs := dialQueued(t, addr, n)
	m.signal(syscall.SIGHUP)
	_, next := m.waitLine(0, `listen web: relayed 4 connections left in the accept queue`)
	assertAnswered(t, cs, 2)

	// Each client sends a request as soon as it has the last answer.
	type result struct {
		ok   int
		last string
		err  error
	}
	stop := make(chan struct{})
	results := make(chan result, n)
	lastGen := make([]atomic.Int64, n)
	for k, c := range cs {
		go func(k int, c net.Conn) {
			var r result
			br := bufio.NewReader(c)
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					results <- r
					return
				default:
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
					r.err = err
					break
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					r.err = fmt.Errorf("request %d: %w", i, err)
					break
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					r.err = err
					break
				}
				r.ok++
				r.last = string(b)
				if sm := genRx.FindStringSubmatch(r.last); sm != nil {
					g, _ := strconv.Atoi(sm[1])
					lastGen[k].Store(int64(g))
				}
				if resp.Close {
					r.err = fmt.Errorf("request %d: the answer closes the connection", i)
					break
				}
			}
			results <- r
		}(k, c)
	}
	m.reload(3)
	_, next = m.waitLine(next, `gen 2 drained`)
	pid, _ := m.upgrade(m.pid, next)
	m.pid = pid
	eventually(t, "every client answered by the new master's generation", func() bool {
		for k := range lastGen {
			if lastGen[k].Load() < 4 {
				return false
			}
		}
		return true
	})
	st := statusOf(t, m.env)
	close(stop)
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			t.Errorf("client %d: %v after %d answers", i, r.err, r.ok)
		}
		sm := genRx.FindStringSubmatch(r.last)
		if sm == nil {
			t.Errorf("client %d: last answer %q", i, r.last)
			continue
		}
		if g, _ := strconv.Atoi(sm[1]); g < 4 {
			t.Errorf("client %d: last answer from gen %d, want the new master's (4 or later)", i, g)
		}
	}
	if st.Rescue == nil || st.Rescue.Adopted != n {
		t.Errorf("new master's status rescue %+v: want %d adopted relays", st.Rescue, n)
	}
}
