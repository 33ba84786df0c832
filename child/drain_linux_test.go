package child

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestServeHTTPHandoff is the shared-socket reload: server A and server B
// hold the same listening socket, clients loop over keep-alive connections to
// A, and A is told to stop. Every request must succeed, every keep-alive
// client must be moved off A by a "Connection: close" response, and after A
// returned the clients must be served by B.
func TestServeHTTPHandoff(t *testing.T) {
	t.Parallel()
	ln := listenTCP(t)
	lnA := dupListener(t, ln.(syscall.Conn))

	var servedA, servedB atomic.Int64
	warm := make(chan struct{})
	tickB := make(chan struct{}, 1)
	handler := func(name string, n *atomic.Int64, onServe func(int64)) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, name)
			onServe(n.Add(1))
		})
	}
	var warmOnce sync.Once
	srvA := &http.Server{Handler: handler("A", &servedA, func(n int64) {
		if n == 200 {
			warmOnce.Do(func() { close(warm) })
		}
	})}
	srvB := &http.Server{Handler: handler("B", &servedB, func(int64) {
		select {
		case tickB <- struct{}{}:
		default:
		}
	})}
	stopA, doneA := serve(t, srvA, lnA, Options{DrainIdle: 20 * time.Second})

	// Keep-alive clients connect while only A accepts (B starts once each
	// got a response from A); the others dial a new connection per request,
	// racing A's close of its listener.
	const keepAlive, oneShot = 4, 2
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		firstErr atomic.Value
		onA      [keepAlive]atomic.Bool // got a response from A
		reachedA = make(chan struct{}, keepAlive)
		movedOff [keepAlive]atomic.Bool // got "Connection: close" from A
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := "http://" + ln.Addr().String() + "/"
	for i := range keepAlive + oneShot {
		tr := &http.Transport{DisableKeepAlives: i >= keepAlive, MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200000 {
				if ctx.Err() != nil {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := client.Do(req)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && string(body) == "A" && i < keepAlive {
						if !onA[i].Swap(true) {
							reachedA <- struct{}{}
						}
						if resp.Close {
							movedOff[i].Store(true)
						}
					}
				}
				if err != nil && ctx.Err() == nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}

	within(t, warm, "A to serve 200 requests")
	for range keepAlive {
		within(t, reachedA, "every keep-alive client to reach A")
	}
	_, doneB := serve(t, srvB, ln, Options{})
	stopA()
	if err := within(t, doneA, "A to drain"); err != nil {
		t.Errorf("ServeHTTP(A) = %v, want nil", err)
	}
	base := servedB.Load()
	deadline := time.After(20 * time.Second)
	for servedB.Load() < base+200 {
		select {
		case <-tickB:
		case <-deadline:
			t.Fatalf("B served %d requests after A drained, want 200", servedB.Load()-base)
		}
	}
	cancel()
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Errorf("%d requests failed during the handoff; first: %v", n, firstErr.Load())
	}
	for i := range movedOff {
		if !movedOff[i].Load() {
			t.Errorf("keep-alive client %d never got Connection: close from A", i)
		}
	}
	select {
	case err := <-doneB:
		t.Errorf("ServeHTTP(B) returned early: %v", err)
	default:
	}
	t.Logf("A served %d, B served %d", servedA.Load(), servedB.Load())
}

// dupListener makes a second listener on the same socket, the way a worker
// gets its copy.
func dupListener(t *testing.T, c syscall.Conn) net.Listener {
	t.Helper()
	f := dupFile(t, c)
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(fmt.Errorf("file listener: %w", err))
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
