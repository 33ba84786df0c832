package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Nothing a worker starts outlives its slot or its master, however it
// detached: a double fork with setsid, a shell that forks the server as
// npm start does, a setsid grandchild that keeps fd 3. Each test runs with
// the workers in cgroups of their own (as root here: --cgroup auto) and
// without (--cgroup off: process groups, the reaper of orphans and the
// keeper alone).

func init() {
	roles.Register("orphaner", roleOrphaner)
	roles.Register("detach", roleDetach)
	roles.Register("daemon", roleDaemon)
}

// roleOrphaner leaves $ORPHANS processes behind before it serves, each in
// a session of its own and re-parented away from it at once (a double
// fork, as daemons do), with argv[0] "hc-orphan-$ORPHAN_TAG-N" for the
// tests to find them.
func roleOrphaner() int {
	n, _ := strconv.Atoi(os.Getenv("ORPHANS"))
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("hc-orphan-%s-%d", os.Getenv("ORPHAN_TAG"), i)
		cmd := exec.Command(self)
		cmd.Args = []string{name}
		cmd.Env = append(os.Environ(), roleEnv+"=detach", "DAEMON_ARGV0="+name)
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "detach:", err)
			return 1
		}
	}
	return roleLibServe()
}

// roleDetach starts the daemon in a new session and exits at once: the
// daemon's parent is gone before it runs.
func roleDetach() int {
	self, err := os.Executable()
	if err != nil {
		return 1
	}
	cmd := exec.Command(self)
	cmd.Args = []string{os.Getenv("DAEMON_ARGV0")}
	cmd.Env = append(os.Environ(), roleEnv+"=daemon")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// roleDaemon runs until SIGTERM.
func roleDaemon() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	<-term
	return 0
}

// byArgv0 waits for the process whose argv[0] is name and returns its PID.
func byArgv0(t *testing.T, name string) int {
	t.Helper()
	want := []byte(name + "\x00")
	var pid int
	eventually(t, "a process named "+name, func() bool {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			if b, err := os.ReadFile(d + "/cmdline"); err == nil && bytes.HasPrefix(b, want) {
				pid, _ = strconv.Atoi(filepath.Base(d))
				return true
			}
		}
		return false
	})
	t.Cleanup(func() { killIfStill(pid, name) })
	return pid
}

// killIfStill kills pid if it is still the process named name: a test
// that failed leaves nothing behind either.
func killIfStill(pid int, name string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && bytes.HasPrefix(b, []byte(name+"\x00")) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// gone waits until pid has exited and been reaped: no zombie stays.
func gone(t *testing.T, what string, pid int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s (pid %d) gone", what, pid), func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err)
	})
}

// parent is pid's parent, -1 when pid is gone.
func parent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return -1
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// portFree waits until nothing listens on addr any more.
func portFree(t *testing.T, addr string) {
	t.Helper()
	eventually(t, addr+" free", func() bool {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
		return true
	})
}

var cgroupModes = []struct {
	name string
	args []string
}{{"cgroup", nil}, {"nocgroup", []string{"--cgroup", "off"}}}

// A worker that daemonizes a child leaves nothing behind after hotcluster
// stop: the daemon came back to the master (a child subreaper), which
// kills it once its worker has exited.
func TestDaemonOfAWorkerIsGoneAfterStop(t *testing.T) {
	for _, mode := range cgroupModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			tag := fmt.Sprintf("stop%s%d", mode.name, os.Getpid())
			roles.Use("detach")
			roles.Use("daemon")
			m := startOperated(t, "orphaner", append([]string{"--workers", "1", "--listen", "web=127.0.0.1:0",
				"--env", "ORPHANS=1", "--env", "ORPHAN_TAG=" + tag}, mode.args...)...)
			m.waitLine(0, `leftovers: child subreaper`)
			daemon := byArgv0(t, "hc-orphan-"+tag+"-0")
			eventually(t, "the daemon is re-parented to the master", func() bool { return parent(daemon) == m.pid })
			mustCtl(t, m.env, "stop")
			if code := m.wait(); code != 0 {
				t.Fatalf("master exited %d", code)
			}
			gone(t, "the daemon", daemon)
		})
	}
}

// Worker commands that fork, as a shell does: `sh -c 'sleep 1000 & exec
// worker'` (a child in the worker's group), npm start (a shell that forks
// the server and waits), and a setsid grandchild that keeps fd 3. After
// hotcluster stop, and after the master is SIGKILLed, none of them is left
// and the port is free.
func TestForkingCommandsLeaveNothing(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, script string
	}{
		{"background", `sleep 1000 & echo "left $!"; exec "$0"`},
		{"npm-start", `echo "left $$"; "$0"; exit $?`},
		{"setsid-fd3", `setsid sleep 1000 & echo "left $!"; exec "$0"`},
	} {
		for _, mode := range cgroupModes {
			for _, end := range []string{"stop", "sigkill"} {
				t.Run(tc.name+"/"+mode.name+"/"+end, func(t *testing.T) {
					t.Parallel()
					dir := t.TempDir()
					env := []string{"XDG_RUNTIME_DIR=" + dir}
					// The silent role takes fd 3 whatever LISTEN_PID says, as
					// node's server.listen({fd: 3}) does.
					args := append([]string{"--workers", "1", "--listen", "web=127.0.0.1:0", "--ready", "delay", "--ready-delay", "200ms",
						"--env", roleEnv + "=silent"}, mode.args...)
					m := startCommandEnv(t, env, args, "/bin/sh", "-c", tc.script, self)
					addr := m.listenAddr("web")
					sm, _ := m.waitLine(0, `\[g1 w0\] left (\d+)`)
					left, _ := strconv.Atoi(sm[1])
					m.waitLine(0, `serving \(master pid`)
					body, err := get("tcp", addr, "/")
					if err != nil {
						t.Fatal(err)
					}
					server, _ := strconv.Atoi(regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(body)[1])
					t.Cleanup(func() { syscall.Kill(left, syscall.SIGKILL); syscall.Kill(server, syscall.SIGKILL) })
					switch end {
					case "stop":
						mustCtl(t, env, "stop")
						if code := m.wait(); code != 0 {
							t.Fatalf("master exited %d", code)
						}
					case "sigkill":
						m.signal(syscall.SIGKILL)
						m.waitLine(0, `keeper: the master \(pid \d+\) died without stopping; killed`)
					}
					for what, pid := range map[string]int{"what the shell left": left, "the server": server} {
						eventually(t, fmt.Sprintf("%s (pid %d) gone", what, pid), func() bool { return !alive(pid) || parent(pid) == -1 || zombie(pid) })
					}
					portFree(t, addr)
				})
			}
		}
	}
}

// zombie: pid has exited and waits for its parent.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}
