//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/child"
)

// The worker role is started by hotcluster as `TESTBINARY chaos-worker
// NONCE` with CHAOS_ROLE=worker. NONCE, unique per master, lets a test find
// every process of its group in /proc, even one hotcluster lost track of.
//
// What the worker does is its mode, read once at start from the file named by
// modeFileEnv (so that a test can change what the next generation does
// between two SIGHUPs), or from modeEnv:
const (
	modeServe      = "serve"       // serve with child.ServeHTTP, drain on SIGTERM
	modeCrash      = "crash"       // take the listener, then exit 3 before ready
	modeHang       = "hang"        // take the listener, never report ready
	modeIgnoreTerm = "ignore-term" // serve, but ignore SIGTERM: only SIGKILL ends it
)

const (
	modeFileEnv = "CHAOS_MODE_FILE"
	modeEnv     = "CHAOS_MODE"
	// upLine starts the line each worker prints when it starts; the master
	// prefixes it with "[gGEN wSLOT] ".
	upLine = "CHAOS up"
	// hangFor bounds how long a hanging worker waits for its SIGKILL (it
	// also dies with the master).
	hangFor = 10 * time.Minute
)

// Worker roles run on the main thread, whose parent-death signal the shim
// armed before exec (prctl's setting is per thread).
func init() {
	if os.Getenv(roleEnv) != "" {
		runtime.LockOSThread()
	}
}

func runRole(role string) int {
	if role != "worker" {
		fmt.Fprintf(os.Stderr, "unknown chaos role %q\n", role)
		return 2
	}
	mode := os.Getenv(modeEnv)
	if f := os.Getenv(modeFileEnv); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mode = strings.TrimSpace(string(b))
	}
	if mode == "" {
		mode = modeServe
	}
	pid, gen, slot := os.Getpid(), child.Generation(), child.WorkerID()
	fmt.Printf("%s pid=%d gen=%d slot=%d mode=%s\n", upLine, pid, gen, slot, mode)

	if mode == modeIgnoreTerm {
		// Before the listener exists: a SIGTERM that comes early is
		// ignored too.
		signal.Ignore(syscall.SIGTERM)
	}
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case modeCrash:
		fmt.Println("boom: this generation crashes before it is ready")
		return 3
	case modeHang:
		fmt.Println("stuck before ready")
		<-time.After(hangFor)
		return 1
	case modeServe, modeIgnoreTerm:
	default:
		fmt.Fprintf(os.Stderr, "unknown chaos mode %q\n", mode)
		return 2
	}

	// The body says who answered; the load generator's OnResponse reads it.
	body := []byte(fmt.Sprintf("pid=%d gen=%d slot=%d\n", pid, gen, slot))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("X-Chaos-Pid", strconv.Itoa(pid))
			h.Set("X-Chaos-Gen", strconv.Itoa(gen))
			h.Set("X-Chaos-Slot", strconv.Itoa(slot))
			w.Write(body)
		}),
		ReadHeaderTimeout: 30 * time.Second,
	}
	var opts child.Options
	if mode == modeIgnoreTerm {
		opts.Signals = []os.Signal{} // no stop signal at all
	}
	if err := child.ServeHTTP(context.Background(), srv, ln, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
