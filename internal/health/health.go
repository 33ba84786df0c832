// Package health serves the master's probes over HTTP, on a port apart
// from the service's (hotcluster run --health ADDR), for Kubernetes'
// liveness and readiness probes and for load balancers' health checks:
//
//	/livez   200 while the master's loop answers within Timeout; 503 if it
//	         is stuck (restart the master)
//	/readyz  200 while a generation serves, reloads included; 503 before
//	         the first generation serves, when nothing serves (every slot
//	         given up) and from the start of a shutdown (take the master
//	         out of rotation)
//	/status  the `hotcluster status --json` document
//
// Invariant: a probe's answer is decided by the master's own loop, asked
// each time with a deadline: a stuck loop fails both probes within Timeout
// rather than answering from a stale flag.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Timeout bounds each probe's question to the master: a loop that has not
// answered by then is stuck. Probes should wait longer (Kubernetes'
// timeoutSeconds: 2 or more).
const Timeout = time.Second

// ShutdownTimeout bounds how long Serve, once its context ended, waits for
// the probes it is answering.
const ShutdownTimeout = 2 * time.Second

// Checks are the master's answers. Each returns nil for "yes", or why not.
type Checks struct {
	// Live: the master's loop answers.
	Live func(ctx context.Context) error
	// Ready: a generation serves and the master is not shutting down.
	Ready func(ctx context.Context) error
	// Status: the status document.
	Status func(ctx context.Context) (any, error)
}

// Handler answers /livez, /readyz and /status; GET and HEAD only.
func Handler(c Checks) http.Handler {
	mux := http.NewServeMux()
	probe := func(check func(context.Context) error, yes string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), Timeout)
			defer cancel()
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if err := check(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "%v\n", err)
				return
			}
			fmt.Fprintln(w, yes)
		}
	}
	mux.HandleFunc("GET /livez", probe(c.Live, "live"))
	mux.HandleFunc("GET /readyz", probe(c.Ready, "ready"))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), Timeout)
		defer cancel()
		st, err := c.Status(ctx)
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%v\n", err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		e.Encode(st)
	})
	return mux
}

// Stuck is what Live and Ready say when the master's loop did not answer
// in time.
func Stuck(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("the master's loop did not answer within %s", Timeout)
	}
	return err
}

// Serve answers on ln until ctx ends, then stops: it closes ln first and
// answers what it had accepted (with Connection: close) before it shuts
// the server down, waiting at most ShutdownTimeout in all. The listening
// socket may be shared with a new master (an upgrade), which answers what
// arrives from then on; a Shutdown begun between an accept and the read of
// its request would drop that connection unanswered (golang/go#75591).
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	var mu sync.Mutex
	open := 0
	idle := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: h,
		// A probe sends its request at once; anything else is not a probe.
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ConnState: func(_ net.Conn, st http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			switch st {
			case http.StateNew:
				open++
			case http.StateClosed, http.StateHijacked:
				if open--; open == 0 {
					select {
					case idle <- struct{}{}:
					default:
					}
				}
			}
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve health on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	deadline := time.NewTimer(ShutdownTimeout)
	defer deadline.Stop()
	srv.SetKeepAlivesEnabled(false)
	ln.Close()
	// Serve has returned: every connection it accepted is counted.
	<-served
	for {
		mu.Lock()
		n := open
		mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-idle:
			continue
		case <-deadline.C:
		}
		break
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
		return fmt.Errorf("stop serving health on %s: %w", ln.Addr(), err)
	}
	return nil
}
