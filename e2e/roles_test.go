package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/hotcluster/hotcluster/child"
	"github.com/hotcluster/hotcluster/internal/testroles"
	"golang.org/x/sys/unix"
)

// roles are the worker programs the tests run, as the test binary itself.
// Each uses the real worker library where a Go program would.
var roles testroles.Set

func init() {
	roles.Register("lib", roleLib)
	roles.Register("plain", rolePlain)
	roles.Register("crash-from-gen2", roleCrashFromGen2)
	roles.Register("never-ready-from-gen2", roleNeverReadyFromGen2)
}

// Worker roles run on the main thread, the one whose parent-death signal
// the worker contract sets (prctl's setting is per thread).
func init() {
	if r := os.Getenv(roleEnv); r != "" && r != "master" {
		runtime.LockOSThread()
	}
}

// reportContract prints, before the library consumes the environment, what
// the worker inherited: one line the tests parse.
func reportContract() {
	var b strings.Builder
	var pdeathsig int32
	unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&pdeathsig)), 0, 0, 0)
	fmt.Fprintf(&b, "CONTRACT pid=%d pgid=%d pdeathsig=%d uid=%d gid=%d", os.Getpid(), syscall.Getpgrp(), pdeathsig, os.Getuid(), os.Getgid())
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
		"HOTCLUSTER_WORKER_ID", "HOTCLUSTER_GENERATION", "HOTCLUSTER_WORKERS", "HOTCLUSTER_SHIM", "EXTRA",
		"HOTCLUSTER_IPC_FD", "NODE_CHANNEL_FD"} {
		fmt.Fprintf(&b, " %s=%s", k, os.Getenv(k))
	}
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	for fd := 3; fd < 3+n; fd++ {
		sa, err := unix.Getsockname(fd)
		addr := "?"
		if err == nil {
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				addr = net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port))
			case *unix.SockaddrInet6:
				addr = net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port))
			case *unix.SockaddrUnix:
				addr = sa.Name
			}
		}
		fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		fmt.Fprintf(&b, " fd%d=%s fd%dnonblock=%v", fd, addr, fd, fl&unix.O_NONBLOCK != 0)
	}
	if wd, err := os.Getwd(); err == nil {
		fmt.Fprintf(&b, " cwd=%s", wd)
	}
	fmt.Println(b.String())
}

func hello(w http.ResponseWriter, r *http.Request) {
	if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil {
		fmt.Println("SLOW START") // what tests wait for
		// The request's own work, not synchronisation.
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	fmt.Fprintf(w, "hello pid=%d gen=%d worker=%d\n", os.Getpid(), child.Generation(), child.WorkerID())
}

func roleLib() int {
	reportContract()
	return roleLibServe()
}

// roleLibServe serves hello with the worker library.
func roleLibServe() int {
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	if err := child.ServeHTTP(context.Background(), srv, ln, child.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// rolePlain is what most Go servers do: serve, and on SIGTERM call a plain
// http.Server.Shutdown. Only hotcluster's handoff keeps it from losing
// requests on reload.
func rolePlain() int {
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return servePlain(ln)
}

// servePlain serves hello on lns, reports ready, and at SIGTERM calls a
// plain http.Server.Shutdown.
func servePlain(lns ...net.Listener) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	for _, ln := range lns {
		go srv.Serve(ln)
	}
	child.Ready()
	<-term
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func roleCrashFromGen2() int {
	if child.Generation() >= 2 {
		fmt.Println("boom: this generation refuses to start")
		return 3
	}
	return roleLib()
}

func roleNeverReadyFromGen2() int {
	if child.Generation() >= 2 {
		if _, err := child.Listen("", "tcp", "127.0.0.1:0"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("stuck before ready")
		select {}
	}
	return roleLib()
}

// roleSilent speaks no protocol at all: it takes fd 3 with the standard
// library only and never writes to NOTIFY_SOCKET, like most programs.
func roleSilent() int {
	f := os.NewFile(3, "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello pid=%d gen=%s\n", os.Getpid(), os.Getenv("HOTCLUSTER_GENERATION"))
	})}
	go srv.Serve(ln)
	<-term
	srv.Shutdown(context.Background())
	return 0
}

func init() { roles.Register("silent", roleSilent) }

// roleDevApp stands for a program built by a development build: the build
// writes a message file to {out}, passed as the argument, and the worker
// serves its content.
func roleDevApp() int {
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "msg=%s gen=%d\n", strings.TrimSpace(string(msg)), child.Generation())
	})}
	if err := child.ServeHTTP(context.Background(), srv, ln, child.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func init() { roles.Register("devapp", roleDevApp) }

// roleIPCFlood writes garbage, an oversized line and a flood of valid
// messages on its channel, then "ready", then serves.
func roleIPCFlood() int {
	reportContract()
	fd, err := strconv.Atoi(os.Getenv("HOTCLUSTER_IPC_FD"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "no HOTCLUSTER_IPC_FD")
		return 1
	}
	ch := os.NewFile(uintptr(fd), "ipc")
	ch.WriteString("{not json\n")
	ch.WriteString(`{"valid":true}` + "\n") // ends that burst of bad input
	ch.Write(append(bytes.Repeat([]byte("x"), 2<<20), '\n'))
	for i := 0; i < 10000; i++ {
		ch.WriteString(`{"n":1}` + "\n")
	}
	ch.WriteString(`"ready"` + "\n")
	return roleLibServe()
}

func init() { roles.Register("ipc-flood", roleIPCFlood) }

// roleIPCReady is a Go worker that reports readiness over the message
// channel (child.Send("ready")) instead of NOTIFY_SOCKET.
func roleIPCReady() int {
	reportContract()
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	go func() {
		if err := child.Send(map[string]string{"hello": "master"}); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		if err := child.Send("ready"); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	if err := child.ServeHTTP(context.Background(), srv, ln, child.Options{NoReady: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func init() { roles.Register("ipc-ready", roleIPCReady) }
