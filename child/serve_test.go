package child

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// noSignals keeps in-process servers off the test process's signals.
var noSignals = []os.Signal{}

// serve runs ServeHTTP in a goroutine and returns its result channel; the
// test's cleanup stops it if the test did not.
func serve(t *testing.T, srv *http.Server, ln net.Listener, opts Options) (stop context.CancelFunc, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if opts.Signals == nil {
		opts.Signals = noSignals
	}
	c := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		c <- ServeHTTP(ctx, srv, ln, opts)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Error("ServeHTTP did not return")
		}
	})
	return cancel, c
}

func within[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func TestListenByHand(t *testing.T) {
	t.Parallel()
	ln, err := Listen("web", "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.Addr().(*net.TCPAddr).Port == 0 {
		t.Errorf("listener has no port: %v", ln.Addr())
	}
	pc, err := ListenPacket("", "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	if _, err := Listen("web", "tcp", "256.0.0.1:0"); err == nil {
		t.Errorf("Listen on a bad address succeeded")
	}
	if Names() != nil {
		t.Errorf("Names() = %v, want nil", Names())
	}
	if err := Ready(); err != nil {
		t.Errorf("Ready() = %v, want nil by hand", err)
	}
	if err := Notify("STATUS=x"); err != nil {
		t.Errorf("Notify() = %v, want nil by hand", err)
	}
	if Generation() != 0 || WorkerID() != -1 || Workers() != 0 {
		t.Errorf("Generation, WorkerID, Workers = %d, %d, %d; want 0, -1, 0", Generation(), WorkerID(), Workers())
	}
}

// TestServeHTTPSlowRequest: a request running when the drain starts
// completes, says "Connection: close", and ServeHTTP waits for it.
func TestServeHTTPSlowRequest(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow")
	})}
	draining := make(chan struct{})
	stop, done := serve(t, srv, ln, Options{DrainIdle: 20 * time.Second, onDraining: func() { close(draining) }})

	type result struct {
		resp *http.Response
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp, string(b), err}
	}()
	within(t, started, "the request to start")
	stop()
	within(t, draining, "the drain to start")
	select {
	case err := <-done:
		t.Fatalf("ServeHTTP returned %v while a request was running", err)
	default:
	}
	close(release)
	r := within(t, got, "the response")
	if r.err != nil || r.body != "slow" {
		t.Fatalf("response %q, %v; want slow", r.body, r.err)
	}
	if !r.resp.Close {
		t.Errorf("response written during the drain lacks Connection: close")
	}
	if err := within(t, done, "ServeHTTP"); err != nil {
		t.Errorf("ServeHTTP = %v, want nil", err)
	}
}

// TestServeHTTPAcceptedBeforeStop is golang/go#75591: a connection accepted
// before the stop whose request arrives after it is answered, not dropped.
func TestServeHTTPAcceptedBeforeStop(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted <- struct{}{}
			}
		},
	}
	draining := make(chan struct{})
	stop, done := serve(t, srv, ln, Options{DrainIdle: 20 * time.Second, onDraining: func() { close(draining) }})

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	within(t, accepted, "the connection to be accepted")
	stop()
	within(t, draining, "the drain to start")
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request sent after the stop: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" || !resp.Close {
		t.Errorf("response %d %q close=%v; want 200 ok close=true", resp.StatusCode, b, resp.Close)
	}
	if err := within(t, done, "ServeHTTP"); err != nil {
		t.Errorf("ServeHTTP = %v, want nil", err)
	}
}

// TestServeHTTPShutdownTimeout: a request that outlives the drain budget is
// cut off and ServeHTTP reports it.
func TestServeHTTPShutdownTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // until the server closes the connection
	})}
	stop, done := serve(t, srv, ln, Options{DrainIdle: time.Millisecond, ShutdownTimeout: time.Millisecond})
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String()); err == nil {
			resp.Body.Close()
		}
	}()
	within(t, started, "the request to start")
	stop()
	if err := within(t, done, "ServeHTTP"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ServeHTTP = %v, want %v", err, context.DeadlineExceeded)
	}
}

// TestServeHTTPResponseWriter: the wrapper keeps what handlers rely on, and
// a handler that writes nothing during the drain still closes the connection.
func TestServeHTTPResponseWriter(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var problems []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Flusher); !ok {
			problems = append(problems, "no http.Flusher")
		}
		if _, ok := w.(http.Hijacker); !ok {
			problems = append(problems, "no http.Hijacker")
		}
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			problems = append(problems, "ResponseController: "+err.Error())
		}
		close(started)
		<-release
	})}
	draining := make(chan struct{})
	stop, done := serve(t, srv, ln, Options{DrainIdle: 20 * time.Second, onDraining: func() { close(draining) }})
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- nil
			return
		}
		resp.Body.Close()
		got <- resp
	}()
	within(t, started, "the request to start")
	stop()
	within(t, draining, "the drain to start")
	close(release)
	resp := within(t, got, "the response")
	if resp == nil || resp.StatusCode != 200 || !resp.Close {
		t.Errorf("response %+v; want 200 with Connection: close", resp)
	}
	if err := within(t, done, "ServeHTTP"); err != nil {
		t.Errorf("ServeHTTP = %v", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
