// A Go HTTP server that listens on its own port with net.Listen, built
// statically (CGO_ENABLED=0): no LD_PRELOAD trick reaches it. On SIGTERM
// it calls a plain http.Server.Shutdown. The generation in its answers is
// only for the tests.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ln, err := net.Listen("tcp", ":"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello pid=%d gen=%s\n", os.Getpid(), os.Getenv("HOTCLUSTER_GENERATION"))
	})}
	go srv.Serve(ln)
	<-term
	srv.Shutdown(context.Background())
}
