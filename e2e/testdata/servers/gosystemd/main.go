// Command gosystemd is a Go server on hotcluster's socket without the child
// package: the listener from go-systemd's activation.Listeners (which checks
// LISTEN_PID), READY=1 with daemon.SdNotify, and on SIGTERM a plain
// http.Server.Shutdown, which is what most Go programs do. Shutdown closes
// idle keep-alive connections at once, racing a request a client is sending
// on one (golang/go#75591): docs/servers.md counts what that loses.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gosystemd:", err)
		os.Exit(1)
	}
}

func run() error {
	lns, err := activation.Listeners()
	if err != nil {
		return fmt.Errorf("take the inherited sockets: %w", err)
	}
	if len(lns) == 0 || lns[0] == nil {
		return errors.New("no socket from LISTEN_FDS")
	}
	line := fmt.Sprintf("hello pid=%d gen=%s worker=%s\n", os.Getpid(), os.Getenv("HOTCLUSTER_GENERATION"), os.Getenv("HOTCLUSTER_WORKER_ID"))
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, line) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lns[0]) }()
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		return fmt.Errorf("notify ready: %w", err)
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
