package e2e

import (
	"debug/elf"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/intercept"
	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/internal/testroles"
)

// Unmodified programs, which bind their own port and know nothing of fd
// 3, under hotcluster: the master's bind interception hands each the
// master's socket, and its listen(2) makes it ready.

// needIntercept skips where the kernel or this sandbox has no seccomp user
// notification: a real platform limit, named.
func needIntercept(t *testing.T) {
	t.Helper()
	if err := intercept.Available(); err != nil {
		t.Skipf("bind interception cannot work here: %v", err)
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago: the
// programs bind a port given on their command line, before the master
// starts. It is below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), which the load generators' connections
// of the tests running beside this one take their local ports from: one of
// those could take a port of that range before the master binds it.
func freePort(t *testing.T) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			low, _ = strconv.Atoi(f[0])
		}
	}
	const first = 10000
	if low <= first+1000 {
		t.Fatalf("the ephemeral port range starts at %d: no room below it for the tests' ports", low)
	}
	for i := 0; i < 100; i++ {
		port := strconv.Itoa(first + rand.IntN(low-first))
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			continue // taken: try another
		}
		ln.Close()
		return port
	}
	t.Fatalf("no free port of 127.0.0.1 in %d–%d after 100 tries", first, low-1)
	return ""
}

// startUnmodified runs `hotcluster run ARGS -- COMMAND` with a control
// socket of its own, once it serves.
func startUnmodified(t *testing.T, env, args []string, command ...string) *operated {
	t.Helper()
	dir := t.TempDir()
	env = append(env, "XDG_RUNTIME_DIR="+dir)
	m := startCommandEnv(t, env, args, command...)
	m.waitLine(0, `serving \(master pid`)
	return &operated{m, env, filepath.Join(dir, "hotcluster")}
}

// buildC compiles testdata/unmodified/server.c.
func buildC(t *testing.T) string {
	t.Helper()
	gcc := testroles.Tool(t, "gcc")
	bin := filepath.Join(t.TempDir(), "cserver")
	if out, err := exec.Command(gcc, "-O2", "-Wall", "-o", bin, "testdata/unmodified/server.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// buildStaticGo builds testdata/unmodified/gohttp with CGO_ENABLED=0 and
// checks that the result is static: no dynamic loader, so LD_PRELOAD (how
// huptime and the like patch bind) cannot reach it.
func buildStaticGo(t *testing.T) string {
	t.Helper()
	testroles.Tool(t, "go")
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/unmodified/gohttp/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module gohttp\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gohttp")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s has a dynamic loader: not static", bin)
		}
	}
	return bin
}

// answered makes one request with a new connection and checks that it is
// answered 200, in HTTP/1.0 (python's http.server) or 1.1.
func answered(addr string) error {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") && !strings.HasPrefix(string(b), "HTTP/1.0 200") {
		return fmt.Errorf("response %.80q", b)
	}
	return nil
}

// listenedBeforeReady reads the event stream up to the end of gen's
// turnover and checks that each of its n workers was listening before it
// was ready.
func listenedBeforeReady(t *testing.T, ev *eventStream, gen, n int) {
	t.Helper()
	listening := map[int]bool{}
	ready := map[int]bool{}
	for {
		e := ev.next(func(e control.Event) bool { return e.Generation == uint64(gen) })
		switch e.Event {
		case "listening":
			if e.Listener == "" {
				t.Errorf("gen %d: listening event without its listener: %+v", gen, e)
			}
			listening[*e.Slot] = true
		case "ready":
			if !listening[*e.Slot] {
				t.Errorf("gen %d worker %d ready before it was listening", gen, *e.Slot)
			}
			ready[*e.Slot] = true
		case "reload-failed":
			t.Fatalf("gen %d failed: %s", gen, e.Error)
		case "reload-done":
			if len(ready) != n {
				t.Errorf("gen %d done with %d workers ready, want %d", gen, len(ready), n)
			}
			return
		}
	}
}

// Each program (python3 -m http.server, a Node listen(PORT), a static Go
// net.Listen, a C bind and listen, the same C server pre-forking three
// children after its bind) serves under 2 workers and reloads 5 times under load, a
// connection per request, without a failed request. --ready-delay is ten
// minutes and --ready-timeout 50s: every generation is ready because its
// workers listened, or it fails.
func TestUnmodifiedReloads(t *testing.T) {
	t.Parallel()
	needIntercept(t)
	for _, tc := range []struct {
		name string
		// command runs on port; gen says whether its answers name the
		// generation.
		command func(t *testing.T, port string) []string
		gen     bool
	}{
		{"python", func(t *testing.T, port string) []string {
			return []string{python3(t), "-m", "http.server", port, "--bind", "127.0.0.1"}
		}, false},
		{"node", func(t *testing.T, port string) []string {
			node := testroles.Tool(t, "node")
			return []string{node, "testdata/unmodified/server.js"}
		}, true},
		{"go", func(t *testing.T, port string) []string { return []string{buildStaticGo(t)} }, true},
		{"c", func(t *testing.T, port string) []string { return []string{buildC(t), port, "127.0.0.1"} }, true},
		{"c-prefork", func(t *testing.T, port string) []string { return []string{buildC(t), port, "0.0.0.0", "3"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := freePort(t)
			unmodifiedReloads(t, port, tc.command(t, port), tc.gen)
		})
	}
}

// unmodifiedReloads runs command (which binds port itself) under 2
// workers, and reloads it 5 times under load: every generation is ready
// because its workers listened (--ready-delay is ten minutes), no request
// fails, and, if gen, the answers name the generation.
func unmodifiedReloads(t *testing.T, port string, command []string, gen bool) {
	t.Helper()
	o := startUnmodified(t, []string{"PORT=" + port},
		[]string{"--workers", "2", "--listen", "web=127.0.0.1:" + port, "--env", "PORT=" + port,
			"--ready-delay", "10m", "--ready-timeout", "50s"}, command...)
	addr := "127.0.0.1:" + port
	ev := watchEvents(t, o.env)
	if err := answered(addr); err != nil {
		t.Fatalf("gen 1: %v", err)
	}
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	for g := 2; g <= 6; g++ {
		o.reload(g)
		listenedBeforeReady(t, ev, g, 2)
	}
	assertNoFailures(t, stop())
	if gen {
		assertServedBy(t, "tcp", addr, 6)
	}
	if n := o.count(`gen \d+: worker \d \(pid \d+\) binds \S+ itself`); n != 6 {
		t.Errorf("%d lines about workers binding the port themselves, want one per generation (6)", n)
	}
}

// A program run by a shell that forks it (sh -c 'server; …', npm start)
// binds from a descendant of the worker: the filter is inherited.
func TestForkedChildBindsTheMastersSocket(t *testing.T) {
	t.Parallel()
	needIntercept(t)
	bin := buildC(t)
	port := freePort(t)
	// Not "exec": the shell forks the server and waits for it.
	o := startUnmodified(t, nil, []string{"--workers", "2", "--listen", "web=127.0.0.1:" + port, "--ready-delay", "10m", "--ready-timeout", "50s"},
		"/bin/sh", "-c", bin+" "+port+" 127.0.0.1; echo server exited")
	addr := "127.0.0.1:" + port
	assertServedBy(t, "tcp", addr, 1)
	o.reload(2)
	assertServedBy(t, "tcp", addr, 2)
}

// A bind of a port that is not a --listen one continues untouched: a free
// one is the worker's own, an occupied one fails with EADDRINUSE, and the
// master says so once per generation.
func TestBindOfAnotherPortIsUntouched(t *testing.T) {
	t.Parallel()
	needIntercept(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := freePort(t)
	self, _ := os.Executable()
	o := startUnmodified(t, nil, []string{"--workers", "2", "--listen", "web=127.0.0.1:" + port, "--ready-delay", "10m",
		"--env", roleEnv + "=" + roles.Use("bind-elsewhere"), "--env", "PORT=" + port, "--env", "BUSY=" + busy.Addr().String()}, self)
	addr := "127.0.0.1:" + port
	assertServedBy(t, "tcp", addr, 1)
	for _, slot := range []string{"0", "1"} {
		sm, _ := o.waitLine(0, `^\[g1 w`+slot+`\] own=(\S+)`)
		// Its own socket: it serves there, and the master knows nothing of it.
		body, err := get("tcp", sm[1], "/")
		if err != nil || !strings.Contains(body, "own gen=1") {
			t.Errorf("worker %s's own port %s: %q, %v", slot, sm[1], body, err)
		}
		o.waitLine(0, `^\[g1 w`+slot+`\] busy: .*address already in use`)
	}
	want := `worker g1 w\d tried to bind ` + regexpQuote(busy.Addr().String()) + `, which is not a --listen address \(web=127\.0\.0\.1:` + port + `\)`
	o.waitLine(0, want)
	o.reload(2)
	o.waitLine(0, `^\[g2 w1\] busy: `)
	o.waitLine(0, `^\[g2 w0\] busy: `)
	o.waitLine(0, strings.Replace(want, "g1", "g2", 1))
	if n := o.count(`tried to bind ` + regexpQuote(busy.Addr().String())); n != 2 {
		t.Errorf("%d lines about the busy port, want one per generation (2)", n)
	}
}

// roleBindElsewhere serves hello on PORT (which it binds itself), binds a
// port of its own beside it, and tries BUSY, which another socket holds.
func roleBindElsewhere() int {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "own:", err)
		return 1
	}
	fmt.Println("own=" + own.Addr().String())
	if _, err := net.Listen("tcp", os.Getenv("BUSY")); err != nil {
		fmt.Println("busy:", err)
	} else {
		fmt.Println("busy: bound")
	}
	gen := os.Getenv("HOTCLUSTER_GENERATION")
	go serveText(own, "own gen="+gen)
	return serveUntilTerm(ln)
}

// serveText answers every request on ln with text.
func serveText(ln net.Listener, text string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			c.Read(buf)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n", len(text)+1, text)
		}()
	}
}

func init() { roles.Register("bind-elsewhere", roleBindElsewhere) }

// With --intercept-bind off a program that binds its own port meets the
// master's socket there (EADDRINUSE), as it would without interception,
// while a program that takes fd 3 works as ever and is ready after the
// delay.
func TestInterceptOff(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	m := startCommand(t, []string{"--workers", "1", "--listen", "web=127.0.0.1:" + port, "--intercept-bind", "off", "--ready-delay", "10m"},
		python3(t), "-m", "http.server", port, "--bind", "127.0.0.1")
	m.waitLine(0, `first generation failed: worker 0 \(pid \d+\) exited before it was ready: exit status 1`)
	m.waitLine(0, `Address already in use`)
	if code := m.wait(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}

	f := startMaster(t, "silent", "--workers", "2", "--listen", "web=127.0.0.1:0", "--intercept-bind", "off", "--ready-delay", "300ms")
	addr := f.listenAddr("web")
	f.waitLine(0, `gen 1 ready in`)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	f.reload(2)
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 2)
}
