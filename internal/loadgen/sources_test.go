package loadgen

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// With Sources, each client dials from its address; a source that is not
// loopback is refused.
func TestSources(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	addr, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		seen[host]++
		mu.Unlock()
		hello(w, r)
	})
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	r := mustRun(t, Config{Addr: addr, Clients: 6, Sources: srcs, MaxRequests: 60, Duration: 20 * time.Second})
	if r.Failures != 0 {
		t.Fatalf("failures: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen["127.0.0.2"] == 0 || seen["127.0.0.3"] == 0 || seen["127.0.0.4"] == 0 {
		t.Errorf("requests per source address %v, want some from each of %v", seen, srcs)
	}
	_, err := Run(t.Context(), Config{Addr: addr, Sources: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, MaxRequests: 1})
	if !errors.Is(err, ErrConfig) {
		t.Errorf("a source off loopback: %v, want ErrConfig", err)
	}
}
