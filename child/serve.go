package child

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotcluster/hotcluster/child/internal/protocol"
)

// Defaults of [Options].
const (
	// DefaultDrainIdle bounds the wait for open connections to finish on
	// their own after the listener closed.
	DefaultDrainIdle = 2 * time.Second
	// DefaultShutdownTimeout bounds http.Server.Shutdown after that wait.
	// With DefaultDrainIdle it stays within hotcluster's default
	// --drain-timeout of 30 s, after which the master kills the worker.
	DefaultShutdownTimeout = 25 * time.Second
)

// Options tunes [ServeHTTP]. The zero value means every default.
type Options struct {
	// DrainIdle bounds how long, after the listener closed, ServeHTTP waits
	// for every open connection to close by itself: a keep-alive connection
	// closes after the answer to its next request, which carries
	// "Connection: close". Zero means DefaultDrainIdle.
	DrainIdle time.Duration
	// ShutdownTimeout bounds the http.Server.Shutdown that follows, which
	// closes the remaining idle connections and waits for active ones. When
	// it expires, ServeHTTP closes every connection and returns the error.
	// Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Signals are the stop signals. Nil means SIGTERM, plus SIGINT when the
	// program runs by hand; set it to match the master's --stop-signal. An
	// empty, non-nil slice means none: only ctx stops the server. A second
	// stop signal during the drain closes every connection at once.
	Signals []os.Signal
	// NoReady keeps ServeHTTP from calling [Ready]. Set it when the program
	// serves several listeners and calls Ready itself once all of them serve.
	NoReady bool

	// onDraining, for tests, runs once the listener is closed and every
	// response says "Connection: close".
	onDraining func()
}

// ServeHTTP serves srv on ln, calls [Ready] once the server accepts, and on
// the first stop signal or when ctx is done drains without losing a request,
// then returns. It returns nil after a complete drain, the error of
// http.Server.Shutdown (after closing the connections left) when the drain
// timed out, or the error that stopped the server otherwise.
//
// ServeHTTP wraps srv.Handler (nil means http.DefaultServeMux) and
// srv.ConnState (the original hook keeps being called), so srv must not be
// started or used elsewhere, and ServeHTTP may be called once per server. It
// closes ln.
//
// # Drain
//
// A plain http.Server.Shutdown loses requests when several processes share a
// socket: it closes idle keep-alive connections at once, racing the client's
// next request on them, and it drops a connection whose first request it
// reads after Shutdown began, such as one accepted just before
// (golang/go#75591). ServeHTTP therefore drains in four steps:
//
//  1. It sends "STOPPING=1" to the notify socket and closes its copy of the
//     listener (close, never shutdown(2), which would stop the socket for
//     the master and every other worker too). Connections not yet accepted
//     stay in the socket's queue for the other holders.
//  2. From then on every response carries "Connection: close", including
//     those of requests already running whose headers are not written yet,
//     so every client moves to a new connection after its current request.
//  3. It waits until every connection is closed (or hijacked), at most
//     DrainIdle: an idle keep-alive connection closes after the answer to
//     its client's next request; one that sends none within DrainIdle is
//     closed by the next step.
//  4. It calls srv.Shutdown, bounded by ShutdownTimeout, which waits for the
//     requests still running.
//
// Hijacked connections (WebSocket and the like) are not waited for; register
// their shutdown with srv.RegisterOnShutdown.
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener, opts Options) error {
	if opts.DrainIdle <= 0 {
		opts.DrainIdle = DefaultDrainIdle
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Signals == nil {
		opts.Signals = stopSignals()
	}
	// Two: the stop, then the one that cuts the drain short.
	sigc := make(chan os.Signal, 2)
	if len(opts.Signals) > 0 {
		signal.Notify(sigc, opts.Signals...)
		defer signal.Stop(sigc)
	}

	d := newDrainer(srv)
	rl := &readyListener{Listener: ln, accepting: make(chan struct{})}
	var serveErr error
	served := make(chan struct{}) // closed once Serve returned serveErr
	go func() {
		serveErr = srv.Serve(rl)
		close(served)
	}()

	var cause error // why the server stops, if not asked to
	select {
	case <-rl.accepting:
		if !opts.NoReady {
			if err := readyDraining(); err != nil {
				cause = err
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-sigc:
		case <-served:
			cause = serveError(serveErr)
		}
	case <-ctx.Done():
	case <-sigc:
	case <-served:
		cause = serveError(serveErr)
	}
	return errors.Join(cause, d.drain(rl, served, opts, sigc))
}

// serveError turns the error srv.Serve returned by itself into the reason the
// server stops; http.ErrServerClosed means someone called Shutdown or Close.
func serveError(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("child: serve: %w", err)
}

// drainer holds the state ServeHTTP adds to the server: the draining flag the
// handler wrapper reads and the count of open connections.
type drainer struct {
	srv      *http.Server
	draining atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	zeroc chan struct{} // closed when conns becomes empty; nil if nobody waits
}

func newDrainer(srv *http.Server) *drainer {
	d := &drainer{srv: srv, conns: make(map[net.Conn]struct{})}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header().Set("Connection", "close")
			h.ServeHTTP(w, r)
			return
		}
		dw := &drainWriter{ResponseWriter: w, draining: &d.draining}
		h.ServeHTTP(dw, r)
		// A handler that wrote nothing leaves the header to the server,
		// which writes it after this returns.
		dw.mark()
	})
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		d.track(c, s)
		if hook != nil {
			hook(c, s)
		}
	}
	return d
}

func (d *drainer) track(c net.Conn, s http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch s {
	case http.StateNew:
		d.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(d.conns, c)
		if len(d.conns) == 0 && d.zeroc != nil {
			close(d.zeroc)
			d.zeroc = nil
		}
	}
}

// idle returns a channel that is closed once no connection is open.
func (d *drainer) idle() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := make(chan struct{})
	if len(d.conns) == 0 {
		close(c)
		return c
	}
	if d.zeroc == nil {
		d.zeroc = c
	}
	return d.zeroc
}

// drain runs steps 1 to 4 of ServeHTTP's drain; served is closed once
// srv.Serve returned.
func (d *drainer) drain(rl *readyListener, served <-chan struct{}, opts Options, sigc <-chan os.Signal) error {
	// The flag first: a connection the server accepts before the listener
	// is closed is then answered with "Connection: close" too.
	d.draining.Store(true)
	_ = Notify(protocol.NotifyStopping) // best effort: the master may be gone
	rl.Close()
	if opts.onDraining != nil {
		opts.onDraining()
	}

	force := false
	timer := time.NewTimer(opts.DrainIdle)
	defer timer.Stop()
	// Serve registers (StateNew) every connection it accepted before it
	// returns, and returns once Accept failed on the closed listener. Count
	// before that and a connection accepted just before the close could be
	// missed, and Shutdown would drop its request (golang/go#75591).
	select {
	case <-served:
		select {
		case <-d.idle():
		case <-timer.C:
		case <-sigc:
			force = true
		}
	case <-timer.C:
	case <-sigc:
		force = true
	}

	ctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if force {
		cancel()
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigc:
			cancel()
		case <-done:
		}
	}()
	err := d.srv.Shutdown(ctx)
	if err != nil {
		d.srv.Close()
		err = fmt.Errorf("child: shutdown: %w", err)
	}
	// Shutdown waited for Serve's accept loop, so this is immediate.
	<-served
	return err
}

// readyListener tells when srv.Serve first calls Accept, that is, serves.
type readyListener struct {
	net.Listener
	once      sync.Once
	accepting chan struct{}
	closeOnce sync.Once
	closeErr  error
}

func (l *readyListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.accepting) })
	return l.Listener.Accept()
}

// Close closes the listener once; Serve closes it again on its way out.
func (l *readyListener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.Listener.Close() })
	return l.closeErr
}

// drainWriter adds "Connection: close" to a response whose header is
// written after the drain began. It keeps the optional interfaces of the
// standard ResponseWriter that handlers assert (http.Flusher, http.Hijacker,
// io.ReaderFrom), and Unwrap serves http.ResponseController.
type drainWriter struct {
	http.ResponseWriter
	draining *atomic.Bool
	wrote    bool
}

func (w *drainWriter) mark() {
	if w.wrote {
		return
	}
	w.wrote = true
	if w.draining.Load() {
		w.ResponseWriter.Header().Set("Connection", "close")
	}
}

func (w *drainWriter) WriteHeader(code int) {
	switch {
	case code == http.StatusSwitchingProtocols:
		w.wrote = true // its Connection: upgrade header must stay
	case code >= 200:
		w.mark()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(p []byte) (int, error) {
	w.mark()
	return w.ResponseWriter.Write(p)
}

func (w *drainWriter) ReadFrom(r io.Reader) (int64, error) {
	w.mark()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (w *drainWriter) Flush() { _ = w.FlushError() }

func (w *drainWriter) FlushError() error {
	w.mark()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.wrote = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
