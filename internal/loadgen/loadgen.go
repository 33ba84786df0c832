package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for zero fields of [Config].
const (
	DefaultNetwork = "tcp"
	DefaultPath    = "/"
	DefaultClients = 1
	DefaultTimeout = 5 * time.Second
)

// MaxBodySize is the largest response body loadgen reads; a longer body is a
// failure with reason "body: too large".
const MaxBodySize = 1 << 20

// MaxClients bounds [Config.Clients].
const MaxClients = 10000

// ErrConfig is wrapped by the error [Run] returns for an invalid [Config].
var ErrConfig = errors.New("loadgen: invalid config")

// Config describes one load run. A zero field means its default.
type Config struct {
	// Network is "tcp" (default) or "unix".
	Network string
	// Addr is host:port for "tcp" (the host must be a loopback IP or
	// "localhost") or a socket path for "unix".
	Addr string
	// Path is the request path, default "/". It must start with "/".
	Path string
	// Clients is the number of concurrent clients, each with at most one
	// request in flight; default 1.
	Clients int
	// KeepAlive reuses connections. When false every request uses a new
	// connection and sends "Connection: close". When true a response with
	// "Connection: close" makes the client reconnect for its next request,
	// which is not a failure; a failed round trip on a reused connection is a
	// failure and is not retried.
	KeepAlive bool
	// Duration ends the run after this long. It is required (> 0) unless
	// MaxRequests is set, and is a hard upper bound either way.
	Duration time.Duration
	// MaxRequests, when > 0, caps the number of round trips attempted by all
	// clients together.
	MaxRequests int
	// Timeout bounds each round trip, dial included; default 5s.
	Timeout time.Duration
	// BucketLatencies, when true, also records a [Histogram] of the
	// latencies of the successful round trips per Timeline bucket (see
	// [Result.BucketLatencies]). It costs about 800 bytes per client and
	// bucket that saw a success, so memory grows with Clients and Duration,
	// not with the number of requests.
	BucketLatencies bool
	// Sources, for "tcp", are the client source addresses: client i
	// dials from Sources[i % len(Sources)] (any port), as clients on as
	// many hosts would, for a server that balances by client address. They
	// must be loopback addresses (127.0.0.0/8 is all loopback on Linux).
	// Empty means the kernel's choice.
	Sources []netip.Addr
	// OnResponse, when set, is called with the body of each successful (2xx)
	// response, from the client's goroutine. It must be cheap and safe for
	// concurrent use, and must not keep body after returning.
	OnResponse func(client int, body []byte)
}

// Run sends load as described by cfg and blocks until ctx is done,
// cfg.Duration has elapsed or cfg.MaxRequests round trips were attempted, and
// every client has closed its connection. It returns an error (wrapping
// [ErrConfig]) only for an invalid cfg; failed round trips are data in the
// [Result].
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	start := time.Now()
	var end time.Time
	runCtx, cancel := context.WithCancel(ctx)
	if cfg.Duration > 0 {
		end = start.Add(cfg.Duration)
		runCtx, cancel = context.WithDeadline(ctx, end)
	}
	defer cancel()

	req := buildRequest(&cfg)
	var budget atomic.Int64
	clients := make([]*client, cfg.Clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := &client{
			id:     i,
			cfg:    &cfg,
			req:    req,
			start:  start,
			end:    end,
			budget: &budget,
			br:     bufio.NewReaderSize(nil, 4096),
		}
		if n := len(cfg.Sources); n > 0 {
			c.dialer.LocalAddr = &net.TCPAddr{IP: cfg.Sources[i%n].AsSlice()}
		}
		clients[i] = c
		stop := context.AfterFunc(runCtx, c.interrupt)
		wg.Go(func() {
			defer stop()
			c.run(runCtx)
		})
	}
	wg.Wait()
	return merge(clients, start, time.Since(start)), nil
}

func (cfg *Config) normalize() error {
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.Clients == 0 {
		cfg.Clients = DefaultClients
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.Network != "tcp" && cfg.Network != "unix":
		return fmt.Errorf("%w: network %q: want tcp or unix", ErrConfig, cfg.Network)
	case cfg.Addr == "":
		return fmt.Errorf("%w: empty address", ErrConfig)
	case !strings.HasPrefix(cfg.Path, "/") || strings.ContainsAny(cfg.Path, " \r\n"):
		return fmt.Errorf("%w: path %q: want an absolute path without spaces", ErrConfig, cfg.Path)
	case cfg.Clients < 0 || cfg.Clients > MaxClients:
		return fmt.Errorf("%w: clients %d: want 1..%d", ErrConfig, cfg.Clients, MaxClients)
	case cfg.Duration < 0 || cfg.MaxRequests < 0 || cfg.Timeout < 0:
		return fmt.Errorf("%w: negative duration, max requests or timeout", ErrConfig)
	case cfg.Duration == 0 && cfg.MaxRequests == 0:
		return fmt.Errorf("%w: set duration or max requests", ErrConfig)
	}
	for _, a := range cfg.Sources {
		if cfg.Network != "tcp" || !a.IsLoopback() {
			return fmt.Errorf("%w: source %s: want loopback addresses, and network tcp", ErrConfig, a)
		}
	}
	if cfg.Network == "tcp" {
		return checkLoopback(cfg.Addr)
	}
	return nil
}

// checkLoopback keeps test and benchmark traffic on this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: address %q: %v", ErrConfig, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: address %q: only loopback hosts are allowed", ErrConfig, addr)
}

func buildRequest(cfg *Config) []byte {
	host := cfg.Addr
	if cfg.Network == "unix" {
		host = "localhost"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hotcluster-loadgen\r\n", cfg.Path, host)
	if !cfg.KeepAlive {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// client is one sequential HTTP/1.1 client. Everything but mu, conn and
// stopped is owned by the goroutine running run.
type client struct {
	id     int
	cfg    *Config
	req    []byte
	start  time.Time
	end    time.Time // zero when the run has no duration
	budget *atomic.Int64
	br     *bufio.Reader
	dialer net.Dialer

	mu      sync.Mutex
	conn    net.Conn
	stopped bool

	stats clientStats
}

type clientStats struct {
	requests, failures, failuresReused, aborted, dials int
	errors                                             map[string]int
	latencies                                          []time.Duration
	timeline                                           []Bucket
	hists                                              []*Histogram // by bucket, nil where none; only with BucketLatencies
}

// errInterrupted marks a round trip cut short by the end of the run.
var errInterrupted = errors.New("loadgen: run ended")

func (c *client) run(ctx context.Context) {
	defer c.closeConn()
	for ctx.Err() == nil {
		if limit := c.cfg.MaxRequests; limit > 0 && c.budget.Add(1) > int64(limit) {
			return
		}
		t0 := time.Now()
		reused, err := c.roundTrip(ctx, t0)
		t1 := time.Now()
		if err != nil && c.ended(ctx, t1) {
			// The run's end, not the server, interrupted this round trip.
			c.stats.aborted++
			return
		}
		c.record(t0, t1, reused, err)
	}
}

func (c *client) ended(ctx context.Context, now time.Time) bool {
	return ctx.Err() != nil || (!c.end.IsZero() && !now.Before(c.end))
}

// roundTrip sends one request and reads its response. It reports whether the
// connection had been used before. On a *tripError the connection is closed;
// on a *statusError it is kept (the exchange itself was complete).
func (c *client) roundTrip(ctx context.Context, t0 time.Time) (reused bool, err error) {
	deadline := t0.Add(c.cfg.Timeout)
	if !c.end.IsZero() && c.end.Before(deadline) {
		deadline = c.end
	}
	defer func() {
		if _, ok := err.(*statusError); err != nil && !ok {
			c.closeConn()
		}
	}()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	reused = conn != nil
	if conn == nil {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		conn, err = c.dialer.DialContext(dctx, c.cfg.Network, c.cfg.Addr)
		cancel()
		if err != nil {
			return false, &tripError{"dial", err}
		}
		c.stats.dials++
		c.br.Reset(conn)
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
	}
	if err := c.arm(deadline); err != nil {
		return reused, err
	}
	if _, err := conn.Write(c.req); err != nil {
		return reused, &tripError{"write", err}
	}
	// Peek first so that a connection closed without any answer reports the
	// raw cause ("EOF", "connection reset by peer") rather than
	// http.ReadResponse's "unexpected EOF".
	if _, err := c.br.Peek(1); err != nil {
		return reused, &tripError{"read", err}
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return reused, &tripError{"read", err}
	}
	var body []byte
	limited := io.LimitReader(resp.Body, MaxBodySize+1)
	var n int64
	if c.cfg.OnResponse != nil {
		body, err = io.ReadAll(limited)
		n = int64(len(body))
	} else {
		n, err = io.Copy(io.Discard, limited)
	}
	resp.Body.Close()
	if err != nil {
		return reused, &tripError{"body", err}
	}
	if n > MaxBodySize {
		return reused, &tripError{"body", errTooLarge}
	}
	if !c.cfg.KeepAlive || resp.Close {
		c.closeConn()
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return reused, &statusError{resp.StatusCode}
	}
	if c.cfg.OnResponse != nil {
		c.cfg.OnResponse(c.id, body)
	}
	return reused, nil
}

var errTooLarge = errors.New("too large")

// arm sets the round trip's deadline on the current connection unless the run
// has ended; together with interrupt it guarantees that a connection in use
// when the run ends gets a deadline in the past.
func (c *client) arm(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errInterrupted
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return &tripError{"write", err}
	}
	return nil
}

// interrupt runs when the run's context is done: it unblocks any I/O in
// flight. Dials in flight are cancelled by the same context.
func (c *client) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.conn != nil {
		c.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (c *client) closeConn() {
	c.mu.Lock()
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

func (c *client) record(t0, t1 time.Time, reused bool, err error) {
	s := &c.stats
	s.requests++
	lat := t1.Sub(t0)
	i := int(t1.Sub(c.start) / BucketWidth)
	if i >= len(s.timeline) {
		s.timeline = append(s.timeline, make([]Bucket, i+1-len(s.timeline))...)
	}
	b := &s.timeline[i]
	if b.MaxLatency < lat {
		b.MaxLatency = lat
	}
	if err != nil {
		s.failures++
		b.Failures++
		if reused {
			s.failuresReused++
		}
		if s.errors == nil {
			s.errors = make(map[string]int)
		}
		s.errors[reason(err)]++
		return
	}
	b.Successes++
	s.latencies = append(s.latencies, lat)
	if c.cfg.BucketLatencies {
		if i >= len(s.hists) {
			s.hists = append(s.hists, make([]*Histogram, i+1-len(s.hists))...)
		}
		if s.hists[i] == nil {
			s.hists[i] = new(Histogram)
		}
		s.hists[i].Add(lat)
	}
}

func merge(clients []*client, start time.Time, elapsed time.Duration) *Result {
	r := &Result{Errors: make(map[string]int), Start: start, Elapsed: elapsed}
	n := 0
	for _, c := range clients {
		n += len(c.stats.latencies)
	}
	r.Latencies = make([]time.Duration, 0, n)
	for _, c := range clients {
		s := &c.stats
		r.Requests += s.requests
		r.Failures += s.failures
		r.FailuresReused += s.failuresReused
		r.Aborted += s.aborted
		r.Dials += s.dials
		for k, v := range s.errors {
			r.Errors[k] += v
		}
		r.Latencies = append(r.Latencies, s.latencies...)
		if len(s.timeline) > len(r.Timeline) {
			r.Timeline = append(r.Timeline, make([]Bucket, len(s.timeline)-len(r.Timeline))...)
		}
		for i, b := range s.timeline {
			r.Timeline[i].add(b)
		}
	}
	if clients[0].cfg.BucketLatencies {
		r.BucketLatencies = make([]Histogram, len(r.Timeline))
		for _, c := range clients {
			for i, h := range c.stats.hists {
				if h != nil {
					r.BucketLatencies[i].Merge(h)
				}
			}
		}
	}
	slices.Sort(r.Latencies)
	return r
}
