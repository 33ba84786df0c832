package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// floodFor is how long roleNotifyFlood floods its notify socket.
const floodFor = time.Second

// A worker that floods its notify socket is read at the master's rate:
// its sends beyond what the master's bucket and the socket's queue hold
// fail (EAGAIN), so the flood costs the master a bounded share of a core;
// the worker still becomes ready and serves, and the master still answers.
func TestNotifyFloodIsThrottled(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "notify-flood", "--workers", "1", "--listen", "web=127.0.0.1:0")
	sm, _ := m.waitLine(0, `FLOOD sent=(\d+) tried=(\d+)`)
	sent, _ := strconv.Atoi(sm[1])
	tried, _ := strconv.Atoi(sm[2])
	qlen := 512
	if b, err := os.ReadFile("/proc/sys/net/unix/max_dgram_qlen"); err == nil {
		qlen, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	// What the master may read in floodFor (its rate and burst), plus what
	// the socket's queue holds, plus slack for the loop's last instant.
	bound := int(floodFor.Seconds()*1000) + 1000 + qlen + 500
	t.Logf("the worker got %d of %d datagrams through in %s (bound %d); master CPU: %s", sent, tried, floodFor, bound, cpuOf(t, m.pid))
	if sent > bound {
		t.Errorf("the master read %d datagrams in %s, more than its rate allows (%d)", sent, floodFor, bound)
	}
	if tried <= bound {
		t.Skipf("the worker sent only %d datagrams in %s: too slow a machine to flood past the bound", tried, floodFor)
	}
	if st := statusOf(t, m.env); st.Generation != 1 || len(st.Workers) != 1 || st.Workers[0].State != "ready" {
		t.Errorf("status after the flood: %+v", st)
	}
	assertServedBy(t, "tcp", m.listenAddr("web"), 1)
}

// cpuOf returns the user and system time pid has used, from /proc.
func cpuOf(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return err.Error()
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return fmt.Sprintf("%dms user, %dms system", ut*10, st*10)
}

// roleNotifyFlood sends STATUS= datagrams on its notify socket as fast as
// it can for floodFor, without blocking, and prints how many got through,
// then becomes ready and serves.
func roleNotifyFlood() int {
	addr := os.Getenv("NOTIFY_SOCKET")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sa := &unix.SockaddrUnix{Name: addr}
	msg := []byte("STATUS=flooding")
	sent, tried := 0, 0
	for end := time.Now().Add(floodFor); time.Now().Before(end); {
		tried++
		if unix.Sendto(fd, msg, 0, sa) == nil {
			sent++
		}
	}
	unix.Close(fd)
	fmt.Printf("FLOOD sent=%d tried=%d\n", sent, tried)
	return roleLibServe()
}

func init() { roles.Register("notify-flood", roleNotifyFlood) }
