package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout is how long [Serve] lets scrapes in progress finish once
// its context is done, before it closes their connections.
const ShutdownTimeout = 5 * time.Second

// Serve serves h on ln until ctx is done, then shuts the server down and
// returns nil once it has stopped. It blocks for all that time; the caller
// runs it in a goroutine it owns and waits for it to return. Requests in
// progress get [ShutdownTimeout] to finish, after which their connections
// are closed. If serving fails before ctx is done, Serve returns the error.
// Serve closes ln in every case.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler: h,
		// A scrape sends its headers at once; a client that does not is
		// not a scraper and must not hold a connection.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	shutCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if err != nil {
		// Shutdown gave up on connections still busy; cut them.
		srv.Close()
	}
	// Shutdown has closed ln, so Serve returns at once; waiting for it
	// means no goroutine of ours outlives this call.
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("stop serving metrics on %s: %w", ln.Addr(), err)
	}
	return nil
}
