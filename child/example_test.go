package child_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/hotcluster/hotcluster/child"
)

// A complete worker: it takes the socket named "web" (or, run by hand,
// listens on 127.0.0.1:8080), reports ready once it serves, and on SIGTERM
// drains and exits.
func ExampleServeHTTP() {
	ln, err := child.Listen("web", "tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello\n")
	})
	srv := &http.Server{Handler: mux}
	if err := child.ServeHTTP(context.Background(), srv, ln, child.Options{}); err != nil {
		log.Fatal(err)
	}
}

// A worker without an HTTP server reports ready itself and stops on the stop
// signal.
func ExampleStopContext() {
	ctx, stop := child.StopContext(context.Background())
	defer stop()
	if err := child.Ready(); err != nil {
		log.Fatal(err)
	}
	<-ctx.Done() // finish the current job, then return
}

// Run by hand, a program is no worker of any generation.
func ExampleGeneration() {
	fmt.Printf("gen=%d worker=%d of %d\n", child.Generation(), child.WorkerID(), child.Workers())
	// Output: gen=0 worker=-1 of 0
}
