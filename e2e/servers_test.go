package e2e

// The recipes of docs/servers.md, each run as the page says, under load,
// across reloads: with a new connection per request nothing may fail; with
// keep-alive, what fails is measured and reported (a stock server that
// closes its idle keep-alive connections at SIGTERM races the requests its
// clients are sending on them: issue #17), bounded by one request per
// client and reload, always on a reused connection; the recipes that drain
// keep-alive connections themselves must lose nothing.
//
// The servers come from Debian's packages (and rustc's crates from
// Debian's registry); .ci/run installs them. A test skips, naming what is
// missing, only outside CI (testroles.RequireToolsEnv).
//
//	HOTCLUSTER_SERVERS_RELOADS=10 go test -race -run TestServerRecipes -v ./e2e/
//
// is the measurement of docs/servers.md (3 reloads per mode by default).

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/internal/testroles"
)

// recipe is one server of docs/servers.md.
type recipe struct {
	name string
	// prepare checks what the recipe needs, builds or writes what it runs
	// in dir, and returns run's flags and the worker command. port is the
	// one the master listens on (configs that name it).
	prepare func(t *testing.T, dir string, port int) (args, command []string)
	// static: the answer does not name the worker's generation.
	static bool
	// drainsKeepAlive: the recipe's own drain answers with "Connection:
	// close" and closes idle connections only after a grace period, so
	// keep-alive loses nothing either.
	drainsKeepAlive bool
}

// servers is where the recipes' files are.
const servers = "testdata/servers"

// copyDir copies the files of testdata/servers/name into dir, replacing
// @PREFIX@, @PORT@ and @ADDR@.
func copyRecipe(t *testing.T, name, dir string, port int) {
	t.Helper()
	src := filepath.Join(servers, name)
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := strings.NewReplacer("@PREFIX@", dir, "@PORT@", strconv.Itoa(port), "@ADDR@", "127.0.0.1:"+strconv.Itoa(port)).Replace(string(b))
		return os.WriteFile(to, []byte(s), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// succeeds runs a command that tells whether a package is installed.
func succeeds(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// debianPython is Debian's python3, which has Debian's Python packages
// (a python3 first on $PATH may be another).
const debianPython = "/usr/bin/python3"

var recipes = []recipe{
	{name: "gunicorn sync", prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		gunicorn := testroles.Tool(t, "gunicorn")
		copyRecipe(t, "wsgi", dir, 0)
		// gunicorn takes LISTEN_FDS itself; --preload imports the app
		// before its arbiter sends READY=1 (without it, READY=1 comes
		// 300 ms before the worker can answer). The sync worker answers
		// every request with "Connection: close": no keep-alive.
		return nil, []string{gunicorn, "--workers", "2", "--preload", "--chdir", dir, "app:app"}
	}},
	{name: "gunicorn gthread", prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		gunicorn := testroles.Tool(t, "gunicorn")
		copyRecipe(t, "wsgi", dir, 0)
		return nil, []string{gunicorn, "--workers", "1", "--worker-class", "gthread", "--threads", "4", "--preload", "--chdir", dir, "app:app"}
	}},
	{name: "uvicorn", prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		testroles.Need(t, "uvicorn (python3-uvicorn)", succeeds(debianPython, "-c", "import uvicorn"))
		copyRecipe(t, "asgi", dir, 0)
		return nil, []string{debianPython, "-m", "uvicorn", "--fd", "3", "--app-dir", dir, "--lifespan", "off", "--no-access-log", "app:app"}
	}},
	{name: "uwsgi", prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		uwsgi := testroles.Tool(t, "uwsgi")
		testroles.Need(t, "uWSGI's python3 plugin (uwsgi-plugin-python3)", succeeds("test", "-f", "/usr/lib/uwsgi/plugins/python3_plugin.so"))
		copyRecipe(t, "wsgi", dir, 0)
		// http11: plain http closes each connection after its answer
		// without saying so, and a keep-alive client's next request fails.
		// A keep-alive connection holds a core for its life: threads, as
		// many as the clients. uWSGI's SIGTERM re-execs it, and its
		// workers take SIGTERM as "exit now", cutting their requests: the
		// stop signal, which goes to the whole process group, is SIGUSR2
		// (a worker only prints its status), and the hook makes it the
		// master's graceful stop.
		return []string{"--stop-signal", "USR2"}, []string{uwsgi, "--plugin", "python3", "--protocol", "http11", "--master", "--processes", "1", "--threads", "8",
			"--hook-master-start", "unix_signal:12 gracefully_kill_them_all", "--chdir", dir,
			"--wsgi-file", "app.py", "--callable", "app", "--disable-logging"}
	}},
	{name: "puma", prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		puma := testroles.Tool(t, "puma")
		testroles.Need(t, "the sd_notify gem (ruby-sd-notify)", succeeds("ruby", "-e", `require "sd_notify"`))
		copyRecipe(t, "puma", dir, 0)
		return nil, []string{puma, "--bind-to-activated-sockets", "only", "--dir", dir, "--threads", "4:4", "--quiet", filepath.Join(dir, "config.ru")}
	}},
	{name: "lighttpd", static: true, prepare: func(t *testing.T, dir string, port int) ([]string, []string) {
		lighttpd := testroles.Tool(t, "lighttpd")
		copyRecipe(t, "lighttpd", dir, port)
		if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "www", "index.txt"), []byte("hello from lighttpd\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"--stop-signal", "INT"}, []string{lighttpd, "-D", "-f", filepath.Join(dir, "lighttpd.conf")}
	}},
	{name: "nginx", static: true, prepare: func(t *testing.T, dir string, port int) ([]string, []string) {
		nginx := testroles.Tool(t, "nginx")
		copyRecipe(t, "nginx", dir, port)
		return []string{"--env", "NGINX=3;", "--stop-signal", "QUIT"}, []string{nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf")}
	}},
	{name: "express", drainsKeepAlive: true, prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		node := testroles.Tool(t, "node")
		testroles.Need(t, "Express (node-express)", succeeds("env", "NODE_PATH=/usr/share/nodejs", node, "-e", "require('express')"))
		copyRecipe(t, "node", dir, 0)
		return []string{"--env", "NODE_PATH=/usr/share/nodejs"}, []string{node, filepath.Join(dir, "server.js")}
	}},
	{name: "python", drainsKeepAlive: true, prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		testroles.Need(t, "python3-systemd", succeeds(debianPython, "-c", "import systemd.daemon"))
		copyRecipe(t, "python", dir, 0)
		return nil, []string{debianPython, filepath.Join(dir, "server.py")}
	}},
	{name: "go child", drainsKeepAlive: true, prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		return nil, []string{buildHello(t, dir)}
	}},
	{name: "go plain Shutdown", prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		return nil, []string{buildHello(t, dir), "-plain-shutdown"}
	}},
	{name: "go-systemd", prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		// Its own module (go-systemd, outside this repository's go.work),
		// built from the module cache or the Go proxy.
		copyRecipe(t, "gosystemd", dir, 0)
		bin := filepath.Join(dir, "gosystemd")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = dir
		build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build the go-systemd recipe: %v\n%s", err, out)
		}
		return nil, []string{bin}
	}},
	{name: "c", drainsKeepAlive: true, prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		cc := testroles.Tool(t, "cc")
		testroles.Need(t, "libsystemd's headers (libsystemd-dev)", succeeds("test", "-f", "/usr/include/systemd/sd-daemon.h"))
		bin := filepath.Join(dir, "server")
		if err := succeeds(cc, "-O2", "-pthread", "-o", bin, filepath.Join(servers, "c", "server.c"), "-lsystemd"); err != nil {
			t.Fatal(err)
		}
		return nil, []string{bin}
	}},
	{name: "rust", drainsKeepAlive: true, prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		cargo := testroles.Tool(t, "cargo")
		testroles.Need(t, "Debian's listenfd crate (librust-listenfd-dev)", succeeds("test", "-d", "/usr/share/cargo/registry/listenfd-1.0.0"))
		copyRecipe(t, "rust", dir, 0)
		build := exec.Command(cargo, "build", "--release", "--quiet")
		build.Dir = dir
		build.Env = append(os.Environ(), "CARGO_TARGET_DIR="+filepath.Join(dir, "target"), "CARGO_HOME="+filepath.Join(dir, "cargo-home"))
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("cargo build: %v\n%s", err, out)
		}
		return nil, []string{filepath.Join(dir, "target", "release", "hello-listenfd")}
	}},
	{name: "ruby", drainsKeepAlive: true, prepare: func(t *testing.T, dir string, _ int) ([]string, []string) {
		ruby := testroles.Tool(t, "ruby")
		copyRecipe(t, "ruby", dir, 0)
		return nil, []string{ruby, filepath.Join(dir, "server.rb")}
	}},
}

var (
	helloOnce sync.Once
	helloBin  string
	helloErr  error
)

// buildHello builds examples/hello once for the recipes that run it.
func buildHello(t *testing.T, dir string) string {
	t.Helper()
	helloOnce.Do(func() {
		d, err := os.MkdirTemp("", "hotcluster-hello-")
		if err != nil {
			helloErr = err
			return
		}
		helloBin = filepath.Join(d, "hello")
		if out, err := exec.Command("go", "build", "-o", helloBin, "../examples/hello").CombinedOutput(); err != nil {
			helloErr = fmt.Errorf("build examples/hello: %v\n%s", err, out)
		}
	})
	if helloErr != nil {
		t.Fatal(helloErr)
	}
	bin := filepath.Join(dir, "hello")
	copyFile(t, helloBin, bin)
	return bin
}

// freeLoopbackPort returns a port no socket uses now, for a config that
// must name the master's port before it starts.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// assertAnswersFrom makes requests as a client that closes its
// connections does (uWSGI ignores a request's "Connection: close" and
// keeps the connection until its own timeout, so get's read to the end
// would wait for that): each answer must be a 200 and, unless static,
// name generation gen.
func assertAnswersFrom(t *testing.T, addr string, gen int, static bool) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	for i := 0; i < 10; i++ {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("after the reloads: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("after the reloads: status %d, body %q, %v", resp.StatusCode, body, err)
		}
		if sm := genRx.FindStringSubmatch(string(body)); !static && (sm == nil || sm[1] != strconv.Itoa(gen)) {
			t.Fatalf("answer %q after the reloads, want one from gen %d", body, gen)
		}
	}
}

// clients is the load's concurrency: as many as uWSGI's threads and
// puma's, so that no keep-alive client waits for a core.
const clients = 4

func TestServerRecipes(t *testing.T) {
	t.Parallel()
	reloads := 3
	if s := os.Getenv("HOTCLUSTER_SERVERS_RELOADS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("HOTCLUSTER_SERVERS_RELOADS=%q: want 1 to 100", s)
		}
		reloads = n
	}
	for _, r := range recipes {
		t.Run(strings.ReplaceAll(r.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o755); err != nil { // nginx's workers are nobody
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
				t.Fatal(err)
			}
			port := freeLoopbackPort(t)
			args, command := r.prepare(t, dir, port)
			env := []string{"XDG_RUNTIME_DIR=" + t.TempDir()}
			// --drain-timeout bounds a recipe whose old generation does
			// not stop by itself (it would fail the test anyway).
			args = append([]string{"--workers", "2", "--listen", "web=127.0.0.1:" + strconv.Itoa(port), "--ready-timeout", "30s", "--drain-timeout", "10s"}, args...)
			m := startCommandEnv(t, env, args, command...)
			addr := m.listenAddr("web")
			m.waitLine(0, `gen 1 ready in`)
			gen := 1
			var results []string
			for _, keepAlive := range []bool{false, true} {
				stop := load(t, loadgen.Config{Addr: addr, Clients: clients, KeepAlive: keepAlive})
				for i := 0; i < reloads; i++ {
					gen++
					m.reload(gen)
				}
				res := stop()
				mode := "a connection per request"
				if keepAlive {
					mode = "keep-alive"
				}
				results = append(results, fmt.Sprintf("%s %d/%d failed", mode, res.Failures, res.Requests))
				switch {
				case res.Requests == 0:
					t.Errorf("%s: no request made", mode)
				case !keepAlive && res.Failures > 0, keepAlive && r.drainsKeepAlive && res.Failures > 0:
					t.Errorf("%s: %d of %d requests failed across %d reloads: %v", mode, res.Failures, res.Requests, reloads, res.Errors)
				case keepAlive && res.Failures != res.FailuresReused:
					// What stock servers lose is a request sent on an idle
					// keep-alive connection they close; never a new one.
					t.Errorf("%s: %d failures, %d of them on reused connections: %v", mode, res.Failures, res.FailuresReused, res.Errors)
				case keepAlive && res.Failures > clients*reloads:
					// A drain that closes a client's connection under its
					// request costs that client one request per reload: the
					// retry is on a new connection, which the new
					// generation takes. More is a worse drain.
					t.Errorf("%s: %d failures across %d reloads, more than one per client (%d) and reload: %v", mode, res.Failures, reloads, clients, res.Errors)
				}
			}
			assertAnswersFrom(t, addr, gen, r.static)
			t.Logf("RESULT %s: %d reloads each; %s", r.name, reloads, strings.Join(results, "; "))
		})
	}
}
