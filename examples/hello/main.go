// Command hello is the example Go worker: an HTTP server that answers
//
//	hello pid=<pid> gen=<generation> worker=<slot>
//
// on every path, and the same line after N milliseconds on /slow?ms=N. Under
// hotcluster it serves the inherited socket named "web" (or the first one),
// reports ready and drains on SIGTERM through the child package; run by hand
// it listens on -addr.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/child"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on when no socket is inherited")
	reuseport := flag.Bool("reuseport", false, "set SO_REUSEPORT on the -addr listener, so that several copies run by hand share the port")
	plain := flag.Bool("plain-shutdown", false, "on SIGTERM call a plain http.Server.Shutdown instead of child.ServeHTTP's drain")
	accessLog := flag.Bool("access-log", false, "print a line on stdout for every request answered")
	logRate := flag.Int("log-rate", 0, "print this many lines a second on stdout, about 100 bytes each, for log benchmarks")
	ballastMiB := flag.Int("ballast", 0, "allocate and touch this many MiB at start and keep them, to stand for a worker's memory in the --rollout benchmarks")
	flag.Parse()
	ballast = make([]byte, *ballastMiB<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1 // touched: resident, not just reserved
	}
	if *logRate > 0 {
		go printAt(*logRate)
	}
	if err := run(*addr, *reuseport, *plain, *accessLog); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}

func run(addr string, reuseport, plain, accessLog bool) error {
	ln, err := listen(addr, reuseport)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("hello pid=%d gen=%d worker=%d\n", os.Getpid(), child.Generation(), child.WorkerID())
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, line)
		if accessLog {
			fmt.Printf("%s %s %s 200 %d\n", r.RemoteAddr, r.Method, r.URL.Path, len(line))
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 60_000 {
			http.Error(w, "want ms=0…60000", http.StatusBadRequest)
			return
		}
		// Said on stderr, so a drain test knows the request is in flight.
		fmt.Fprintf(os.Stderr, "hello: slow request for %d ms\n", ms)
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, line)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "hello: serving on %s, %s", ln.Addr(), line)
	defer fmt.Fprintf(os.Stderr, "hello: stopped pid=%d\n", os.Getpid())
	if plain {
		return servePlain(srv, ln)
	}
	return child.ServeHTTP(context.Background(), srv, ln, child.Options{})
}

// ballast is -ballast's memory, kept live for the process's life.
var ballast []byte

// printAt prints rate lines a second on stdout, in a batch every 10ms,
// each numbered and padded to about 100 bytes, until the process exits.
func printAt(rate int) {
	w := bufio.NewWriterSize(os.Stdout, 256<<10)
	pad := strings.Repeat("x", 70)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for now := range tick.C {
		due := int(now.Sub(start).Seconds() * float64(rate))
		for ; n < due; n++ {
			fmt.Fprintf(w, "log line %09d %s\n", n, pad)
		}
		w.Flush()
	}
}

// listen takes the inherited socket named "web", or the first inherited one,
// or, run by hand, listens on addr.
func listen(addr string, reuseport bool) (net.Listener, error) {
	names := child.Names()
	if names == nil && reuseport {
		return listenReusePort(addr)
	}
	name := ""
	if slices.Contains(names, "web") {
		name = "web"
	}
	return child.Listen(name, "tcp", addr)
}

// servePlain is what most Go programs do: serve, and on SIGTERM call
// Shutdown, which drops a request that races it (golang/go#75591).
func servePlain(srv *http.Server, ln net.Listener) error {
	ctx, stop := child.StopContext(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if err := child.Ready(); err != nil {
		return err
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), child.DefaultShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
