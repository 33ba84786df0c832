package loadgen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newServer starts a plain net/http server on 127.0.0.1:0 and counts the
// connections it accepts.
func newServer(t *testing.T, h http.HandlerFunc) (addr string, conns *atomic.Int64) {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	conns = new(atomic.Int64)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String(), conns
}

func hello(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello\n")) }

func mustRun(t *testing.T, cfg Config) *Result {
	t.Helper()
	r, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

func TestCountsRequests(t *testing.T) {
	t.Parallel()
	for _, keepAlive := range []bool{false, true} {
		t.Run(map[bool]string{false: "close", true: "keepalive"}[keepAlive], func(t *testing.T) {
			t.Parallel()
			var served atomic.Int64
			addr, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				hello(w, r)
			})
			var bodies atomic.Int64
			r := mustRun(t, Config{
				Addr: addr, Clients: 4, KeepAlive: keepAlive, MaxRequests: 200, Duration: 20 * time.Second,
				OnResponse: func(_ int, body []byte) {
					if string(body) == "hello\n" {
						bodies.Add(1)
					}
				},
			})
			if r.Requests != 200 || r.Failures != 0 || len(r.Latencies) != 200 {
				t.Fatalf("requests=%d failures=%d latencies=%d errors=%v, want 200, 0, 200",
					r.Requests, r.Failures, len(r.Latencies), r.Errors)
			}
			if got := served.Load(); got != 200 {
				t.Errorf("server handled %d requests, want 200", got)
			}
			if got := bodies.Load(); got != 200 {
				t.Errorf("OnResponse saw %d hello bodies, want 200", got)
			}
			if keepAlive {
				if r.Dials > 4 || conns.Load() > 4 {
					t.Errorf("keep-alive opened %d connections (server saw %d), want <= 4", r.Dials, conns.Load())
				}
			} else if r.Dials != 200 || conns.Load() != 200 {
				t.Errorf("opened %d connections (server saw %d), want 200", r.Dials, conns.Load())
			}
			var sum int
			for _, b := range r.Timeline {
				sum += b.Successes
			}
			if sum != 200 {
				t.Errorf("timeline successes sum to %d, want 200", sum)
			}
			if p50, p100 := r.Percentile(50), r.Percentile(100); p50 <= 0 || p100 < p50 {
				t.Errorf("p50=%v max=%v", p50, p100)
			}
		})
	}
}

func TestFailuresWhenServerDropsConnections(t *testing.T) {
	t.Parallel()
	for _, keepAlive := range []bool{false, true} {
		t.Run(map[bool]string{false: "close", true: "keepalive"}[keepAlive], func(t *testing.T) {
			t.Parallel()
			addr, _ := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
			})
			r := mustRun(t, Config{Addr: addr, Clients: 2, KeepAlive: keepAlive, MaxRequests: 50, Duration: 20 * time.Second})
			if r.Requests != 50 || r.Failures != 50 || len(r.Latencies) != 0 {
				t.Fatalf("requests=%d failures=%d successes=%d, want 50 failures", r.Requests, r.Failures, len(r.Latencies))
			}
			var n int
			for k, v := range r.Errors {
				if !strings.HasPrefix(k, "read: ") {
					t.Errorf("unexpected reason %q", k)
				}
				n += v
			}
			if n != 50 {
				t.Errorf("errors %v sum to %d, want 50", r.Errors, n)
			}
		})
	}
}

// TestFailureOnReusedConnection checks that a keep-alive connection the
// server closes after answering is counted as a failure on the next request,
// not retried.
func TestFailureOnReusedConnection(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	addr, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			// Second request on each connection: drop it.
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		hello(w, r)
	})
	r := mustRun(t, Config{Addr: addr, KeepAlive: true, MaxRequests: 10, Duration: 20 * time.Second})
	if r.Requests != 10 || r.Failures != 5 || r.FailuresReused != 5 {
		t.Fatalf("requests=%d failures=%d reused=%d errors=%v, want 10, 5, 5",
			r.Requests, r.Failures, r.FailuresReused, r.Errors)
	}
	if got := n.Load(); got != 10 {
		t.Errorf("server saw %d requests, want 10 (no retries)", got)
	}
}

func TestDialRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := mustRun(t, Config{Addr: addr, Clients: 2, MaxRequests: 20, Duration: 10 * time.Second})
	if r.Requests != 20 || r.Failures != 20 || r.Errors["dial: connection refused"] != 20 {
		t.Fatalf("requests=%d failures=%d errors=%v, want 20 refused", r.Requests, r.Failures, r.Errors)
	}
}

func TestKeepAliveHonoursConnectionClose(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	addr, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		hello(w, r)
	})
	r := mustRun(t, Config{Addr: addr, Clients: 3, KeepAlive: true, MaxRequests: 90, Duration: 20 * time.Second})
	if r.Requests != 90 || r.Failures != 0 {
		t.Fatalf("requests=%d failures=%d errors=%v, want 90, 0", r.Requests, r.Failures, r.Errors)
	}
	if r.Dials < 30 || r.Dials > 33 || conns.Load() != int64(r.Dials) {
		t.Errorf("dials=%d, server saw %d connections, want about 30", r.Dials, conns.Load())
	}
}

func TestStatusFailures(t *testing.T) {
	t.Parallel()
	addr, conns := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	})
	r := mustRun(t, Config{Addr: addr, KeepAlive: true, MaxRequests: 10, Duration: 20 * time.Second})
	if r.Failures != 10 || r.Errors["status 502"] != 10 {
		t.Fatalf("failures=%d errors=%v, want 10 x status 502", r.Failures, r.Errors)
	}
	if conns.Load() != 1 {
		t.Errorf("server saw %d connections, want 1 (a 502 keeps the connection)", conns.Load())
	}
}

// TestBounded checks that a run against a server that never answers ends at
// its Duration, and that the round trips cut short are not failures.
func TestBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	addr, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	t0 := time.Now()
	r := mustRun(t, Config{Addr: addr, Clients: 4, Duration: 300 * time.Millisecond})
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Run took %v, want about 300ms", d)
	}
	if r.Requests != 0 || r.Failures != 0 || r.Aborted != 4 {
		t.Errorf("requests=%d failures=%d aborted=%d, want 0, 0, 4", r.Requests, r.Failures, r.Aborted)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	addr, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	r := mustRun(t, Config{Addr: addr, Timeout: 50 * time.Millisecond, MaxRequests: 3})
	if r.Failures != 3 || r.Errors["read: timeout"] != 3 {
		t.Errorf("failures=%d errors=%v, want 3 x read: timeout", r.Failures, r.Errors)
	}
}

func TestContextCancel(t *testing.T) {
	t.Parallel()
	addr, _ := newServer(t, hello)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	r, err := Run(ctx, Config{Addr: addr, Clients: 2, KeepAlive: true, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Run took %v after cancel", d)
	}
	if r.Requests == 0 || r.Failures != 0 {
		t.Errorf("requests=%d failures=%d errors=%v", r.Requests, r.Failures, r.Errors)
	}
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(l) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	r := mustRun(t, Config{Network: "unix", Addr: path, Clients: 2, KeepAlive: true, MaxRequests: 20, Duration: 10 * time.Second})
	if r.Requests != 20 || r.Failures != 0 {
		t.Fatalf("requests=%d failures=%d errors=%v", r.Requests, r.Failures, r.Errors)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Addr: "127.0.0.1:1"},                                  // neither duration nor max requests
		{Addr: "", Duration: time.Second},                      // no address
		{Addr: "192.0.2.1:80", Duration: time.Second},          // not loopback
		{Addr: "example.com:80", Duration: time.Second},        // not loopback
		{Network: "udp", Addr: "127.0.0.1:1", MaxRequests: 1},  // network
		{Addr: "127.0.0.1:1", Path: "x", MaxRequests: 1},       // path
		{Addr: "127.0.0.1:1", Clients: -1, MaxRequests: 1},     // clients
		{Addr: "127.0.0.1:1", Duration: -time.Second},          // negative
		{Addr: "127.0.0.1:1", MaxRequests: 1, Timeout: -1},     // negative
		{Addr: "127.0.0.1:1", MaxRequests: 1, Clients: 100000}, // too many
	} {
		if _, err := Run(t.Context(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("Run(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1", "127.1.2.3:1"} {
		cfg := Config{Addr: addr, MaxRequests: 1}
		if err := cfg.normalize(); err != nil {
			t.Errorf("normalize(%q) = %v", addr, err)
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	r := &Result{}
	if got := r.Percentile(50); got != 0 {
		t.Errorf("empty p50 = %v", got)
	}
	for i := 100; i >= 1; i-- { // unsorted on purpose
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0: 1, 1: 1, 50: 50, 99: 99, 99.5: 100, 100: 100} {
		if got := r.Percentile(p); got != want*time.Millisecond {
			t.Errorf("p%v = %v, want %v", p, got, want*time.Millisecond)
		}
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	r := &Result{Timeline: []Bucket{
		{Successes: 1, MaxLatency: time.Millisecond},
		{Successes: 2, Failures: 1, MaxLatency: 5 * time.Millisecond},
		{Successes: 3, MaxLatency: 2 * time.Millisecond},
	}}
	got := r.Window(150*time.Millisecond, 300*time.Millisecond)
	want := Bucket{Successes: 5, Failures: 1, MaxLatency: 5 * time.Millisecond}
	if got != want {
		t.Errorf("Window = %+v, want %+v", got, want)
	}
}
