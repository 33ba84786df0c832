package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// RequestTimeout bounds how long a client may take to send its request: a
// half-written request must not hold a connection forever.
const RequestTimeout = 5 * time.Second

// Handler answers one request. It replies through r, and for a stream
// (events) keeps writing until ctx ends: the client went away or the
// server stops.
type Handler func(ctx context.Context, req Request, r *Replier)

// Server serves a control socket.
type Server struct {
	ln      *net.UnixListener
	handler Handler
	// Log reports refused peers and bad requests; nil: not reported.
	Log func(format string, args ...any)
	// RequestTimeout bounds the wait for a request; 0: RequestTimeout.
	RequestTimeout time.Duration
}

// NewServer serves ln with h.
func NewServer(ln *net.UnixListener, h Handler) *Server {
	return &Server{ln: ln, handler: h}
}

// ShutdownGrace bounds how long Serve waits, once its context ended, for
// requests already accepted to be answered. Streams end at once.
const ShutdownGrace = 10 * time.Second

// Serve accepts connections until ctx ends, then closes the listener and
// returns once every connection has ended: requests already accepted are
// still answered (within ShutdownGrace), so that one that reached a master
// handing over to its upgrade does not fail; streams end at once.
func (s *Server) Serve(ctx context.Context) error {
	// hard ends what the grace did not.
	hard, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopping := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stopping)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		t := time.NewTimer(ShutdownGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			cancel()
			<-done
		}
	}()
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
				// Out of descriptors: let connections end rather than spin.
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(hard, stopping, c)
		}()
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log(format, args...)
	}
}

func (s *Server) serveConn(ctx context.Context, stopping <-chan struct{}, c *net.UnixConn) {
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	r := &Replier{c: c, stopping: stopping}
	if err := allowed(c); err != nil {
		s.logf("control: refused a connection: %v", err)
		r.Fail(err)
		return
	}
	timeout := s.RequestTimeout
	if timeout <= 0 {
		timeout = RequestTimeout
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(c, 64<<10)
	req, err := ReadRequest(br)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && ctx.Err() == nil {
			err = fmt.Errorf("%w: incomplete after %s", ErrRequest, timeout)
		}
		// A connection closed before it sent anything is a probe (Alive),
		// or a client that gave up: not worth a line in the master's log.
		if !errors.Is(err, errNoRequest) {
			s.logf("%v", err) // it says "control: bad request: …"
		}
		r.Fail(err)
		return
	}
	c.SetReadDeadline(time.Time{})
	// The client closing its end ends a stream: watch for EOF.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var b [1]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				cancel()
				return
			}
		}
	}()
	defer func() { c.Close(); <-watched }()
	s.handler(ctx, req, r)
}

// allowed accepts peers of the master's own user and root.
func allowed(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if own := uint32(os.Geteuid()); cred.Uid != own && cred.Uid != 0 {
		return fmt.Errorf("permission denied: uid %d (pid %d) is neither the master's user (uid %d) nor root", cred.Uid, cred.Pid, own)
	}
	return nil
}

// Replier writes a request's answer. Its methods return the write's error,
// which ends a stream.
type Replier struct {
	c        *net.UnixConn
	mu       sync.Mutex
	stopping <-chan struct{}
}

// Stopping is closed when the server stops accepting: a stream ends then.
func (r *Replier) Stopping() <-chan struct{} { return r.stopping }

// writeTimeout bounds one write to a client that stopped reading.
const writeTimeout = 10 * time.Second

func (r *Replier) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = r.c.Write(append(b, '\n'))
	return err
}

// OK answers with result (nil for none).
func (r *Replier) OK(result any) error {
	resp := Response{OK: true}
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			return r.Fail(err)
		}
		resp.Result = b
	}
	return r.write(resp)
}

// Fail answers with err.
func (r *Replier) Fail(err error) error {
	return r.write(Response{Error: err.Error()})
}

// Stream writes one more line of a stream after OK.
func (r *Replier) Stream(v any) error { return r.write(v) }

// StreamLines writes lines already encoded, each a JSON value and a
// newline, in one write.
func (r *Replier) StreamLines(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := r.c.Write(b)
	return err
}
