package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// Bind interception with the master as PID 1 of a PID namespace (a
// container without an init), each worker cloned into a cgroup of its own
// or not: the shim's filter, the notification fd handed to the master and
// its supervisor work the same.

func init() { roles.Register("own-bind", roleOwnBind) }

// roleOwnBind is testdata/unmodified/gohttp as a role: it binds PORT
// itself with net.Listen and knows nothing of fd 3 or NOTIFY_SOCKET.
func roleOwnBind() int {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello pid=%d gen=%s\n", os.Getpid(), os.Getenv("HOTCLUSTER_GENERATION"))
	})}
	go srv.Serve(ln)
	<-term
	srv.Shutdown(context.Background())
	return 0
}

// As PID 1, workers that bind the --listen port themselves get the
// master's socket and are ready when they listen (--ready-delay is ten
// minutes), a reload under load fails no request, and SIGTERM leaves the
// namespace empty.
func TestInterceptAsPID1(t *testing.T) {
	needIntercept(t)
	for _, mode := range cgroupModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			port := freePort(t)
			addr := "127.0.0.1:" + port
			m := startPID1(t, roles.Use("own-bind"), append([]string{"--workers", "2", "--listen", "web=" + addr, "--env", "PORT=" + port,
				"--ready-delay", "10m", "--ready-timeout", "50s"}, mode.args...)...)
			m.waitLine(0, `leftovers: PID 1 of its namespace`)
			m.waitLine(0, `gen 1 ready in`)
			assertServedBy(t, "tcp", addr, 1)
			stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
			m.signalInner(syscall.SIGHUP)
			m.waitLine(0, `gen 2 ready in`)
			m.waitLine(0, `gen 1 drained`)
			assertNoFailures(t, stop())
			assertServedBy(t, "tcp", addr, 2)
			if n := m.count(`gen \d+: worker \d \(pid \d+\) binds \S+ itself`); n != 2 {
				t.Errorf("%d lines about workers binding the port themselves, want one per generation (2)", n)
			}
			m.signalInner(syscall.SIGTERM)
			if code := m.wait(); code != 0 {
				t.Fatalf("master (PID 1) exited %d, want 0", code)
			}
			if n := m.count(`hotcluster-shim: |bind interception`); n != 0 {
				t.Errorf("%d lines of shim failures or interception fallbacks", n)
			}
			eventually(t, "the namespace is empty", func() bool { ps, _ := m.inNamespace(); return len(ps) == 0 })
		})
	}
}
