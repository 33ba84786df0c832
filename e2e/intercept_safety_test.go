package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/hotcluster/hotcluster/internal/loadgen"
	"golang.org/x/sys/unix"
)

// What bind interception must never do: leave a process waiting on a
// master that is gone, hide a sandbox's refusal, or take privileges
// silently.

// A master SIGKILLed while a bind waits for it leaves no process waiting
// on it. The worker dies with the master (parent-death signal). A
// grandchild in a session of its own waits in bind for the master: with
// the keeper's reach (a cgroup per worker) it is killed or its bind has
// returned, and nothing of it is left blocked in bind; out of every reach
// of the keeper (--cgroup off, and it holds none of the master's sockets)
// it lives on, and its bind returns ENOSYS (the kernel's answer once the
// notification fd is closed) instead of waiting forever.
func TestMasterGoneLeavesNoBindWaiting(t *testing.T) {
	needIntercept(t)
	for _, tc := range []struct {
		name string
		args []string
		// outside: the keeper cannot reach the grandchild, whose bind
		// must return.
		outside bool
	}{
		{"keeper", nil, false},
		{"outside", []string{"--cgroup", "off"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			result := t.TempDir() + "/result"
			port := freePort(t)
			self, _ := os.Executable()
			args := append([]string{"--workers", "1", "--listen", "web=127.0.0.1:" + port, "--ready-delay", "200ms",
				"--env", roleEnv + "=" + roles.Use("late-binder"), "--env", "PORT=" + port, "--env", "RESULT=" + result}, tc.args...)
			m := startCommand(t, args, self)
			roles.Use("setsid-binder")
			sm, _ := m.waitLine(0, `^\[g1 w0\] worker=(\d+) grandchild=(\d+) start=(\d+)`)
			worker, _ := strconv.Atoi(sm[1])
			grandchild, _ := strconv.Atoi(sm[2])
			start := sm[3]
			same := func() bool { f := procStat(grandchild); return len(f) > 19 && f[19] == start }
			t.Cleanup(func() {
				if same() {
					syscall.Kill(grandchild, syscall.SIGKILL)
				}
			})
			m.waitLine(0, `gen 1 ready in`)
			m.waitLine(0, `^\[g1 w0\] grandchild waits for SIGUSR1`)
			if tc.outside {
				eventually(t, "the master's sockets closed in the grandchild", func() bool { return !holdsSockets(grandchild) })
			}

			// The master can answer nothing now; the grandchild's bind
			// waits for its notification to be served.
			m.signal(syscall.SIGSTOP)
			// kill(2) returns before every thread of the master has
			// stopped: one still running could answer the bind.
			eventually(t, "every thread of the master stopped", func() bool { return allStopped(m.pid) })
			if err := syscall.Kill(grandchild, syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the grandchild waits in bind", func() bool { return inBind(grandchild) })
			m.signal(syscall.SIGKILL)
			m.wait()
			eventually(t, "the worker died with the master", func() bool { return !alive(worker) })
			returned := func() bool {
				b, _ := os.ReadFile(result)
				return len(b) > 0 && b[len(b)-1] == '\n'
			}
			// Gone, or its bind returned: either way not waiting.
			eventually(t, "the grandchild gone or its bind returned", func() bool {
				return !same() || procStat(grandchild)[0] == "Z" || returned()
			})
			if same() && inBind(grandchild) {
				t.Errorf("the grandchild (pid %d) is still blocked in bind", grandchild)
			}
			if b, _ := os.ReadFile(result); len(b) > 0 {
				t.Logf("the grandchild's bind returned: %q", b)
			} else {
				t.Logf("the grandchild was killed in bind")
			}
			if !tc.outside {
				return
			}
			// Out of the keeper's reach: alive, and its bind said ENOSYS.
			if !returned() {
				t.Fatalf("the grandchild's bind never returned (state %v)", procStat(grandchild))
			}
			if b, _ := os.ReadFile(result); !strings.Contains(string(b), "function not implemented") {
				t.Errorf("the grandchild's bind: %q, want ENOSYS (function not implemented)", b)
			}
			if f := procStat(grandchild); !same() || f[0] == "Z" {
				t.Errorf("the grandchild (pid %d) did not live on: state %v", grandchild, f)
			}
		})
	}
}

// allStopped reports whether every thread of pid is stopped (state T).
func allStopped(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(task + "/stat")
		if err != nil {
			return false
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return len(tasks) > 0
}

// procStat is the fields of /proc/PID/stat after the command's name:
// [0] the state (proc(5) field 3), [19] the start time (field 22); nil
// once pid is gone.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// inBind reports whether a thread of pid sits in bind(2) and sleeps there
// (a Go program binds on whichever thread runs the goroutine, not
// necessarily the main one).
func inBind(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task + "/syscall")
		if !strings.HasPrefix(string(b), strconv.Itoa(unix.SYS_BIND)+" ") {
			continue
		}
		if st, _ := os.ReadFile(task + "/stat"); len(st) > 0 {
			f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
			if len(f) > 0 && (f[0] == "S" || f[0] == "D") {
				return true
			}
		}
	}
	return false
}

// holdsSockets reports whether pid has a descriptor of a socket other than
// its own (any fd above 2 that is a socket: the roles below close or mark
// close-on-exec every inherited one).
func holdsSockets(pid int) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		n, _ := strconv.Atoi(filepath.Base(fd))
		l, _ := os.Readlink(fd)
		if n > 2 && strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}

// roleLateBinder starts a grandchild in a session of its own, with none
// of its inherited descriptors (the master's sockets: the keeper of a
// master without cgroups kills what holds them), says both PIDs and the
// grandchild's start time, and waits.
func roleLateBinder() int {
	self, _ := os.Executable()
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if n, err := strconv.Atoi(filepath.Base(fd)); err == nil && n > 2 {
			unix.CloseOnExec(n)
		}
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), roleEnv+"=setsid-binder")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f := procStat(cmd.Process.Pid)
	if len(f) < 20 {
		fmt.Fprintln(os.Stderr, "no stat of the grandchild")
		return 1
	}
	fmt.Printf("worker=%d grandchild=%d start=%s\n", os.Getpid(), cmd.Process.Pid, f[19])
	select {}
}

// roleSetsidBinder says it waits, binds PORT on SIGUSR1 and writes what bind returned to
// RESULT.
func roleSetsidBinder() int {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	fmt.Println("grandchild waits for SIGUSR1")
	<-usr1
	_, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	msg := "bound"
	if err != nil {
		msg = err.Error()
	}
	os.WriteFile(os.Getenv("RESULT"), []byte(msg+"\n"), 0o644)
	select {}
}

func init() {
	roles.Register("late-binder", roleLateBinder)
	roles.Register("setsid-binder", roleSetsidBinder)
	roles.Register("sandboxed-master", roleSandboxedMaster)
}

// roleSandboxedMaster loads a seccomp filter as a container's profile
// would, then becomes the master (on the same thread, which the filter
// is on): SANDBOX=seccomp refuses seccomp(2) altogether, SANDBOX=filter
// only the loading of filters.
func roleSandboxedMaster() int {
	runtime.LockOSThread()
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ja  = unix.BPF_JMP | unix.BPF_JA
		ret = unix.BPF_RET | unix.BPF_K
	)
	deny := unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	f := []unix.SockFilter{
		{Code: ld, K: 0}, // nr
		{Code: jeq, Jt: 0, Jf: 3, K: unix.SYS_SECCOMP},
		{Code: ja, K: 0},  // patched below: seccomp altogether
		{Code: ld, K: 16}, // args[0], low half (little-endian)
		{Code: jeq, Jt: 1, Jf: 0, K: unix.SECCOMP_SET_MODE_FILTER},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		{Code: ret, K: deny},
	}
	if os.Getenv("SANDBOX") == "seccomp" {
		f[2].K = 3 // to the denial
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		fmt.Fprintln(os.Stderr, "sandbox:", e)
		return 3
	}
	os.Setenv(roleEnv, "master")
	self, _ := os.Executable()
	err := syscall.Exec(self, os.Args, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 127
}

// Under a sandbox without seccomp user notification the master says why
// once, and serves programs that take fd 3 as ever (ready after the
// delay); the same when only loading a filter is refused, which the shims
// find out.
func TestSandboxWithoutInterceptionFallsBack(t *testing.T) {
	t.Parallel()
	needIntercept(t)
	for _, tc := range []struct{ sandbox, want string }{
		{"seccomp", `bind interception off: seccomp: operation not permitted \(a sandbox's seccomp profile refuses it\)`},
		{"filter", `bind interception does not work for gen 1 worker \d \(pid \d+\): load the seccomp filter: operation not permitted`},
	} {
		t.Run(tc.sandbox, func(t *testing.T) {
			t.Parallel()
			self, _ := os.Executable()
			cmd := exec.Command(self, "run", "--workers", "2", "--listen", "web=127.0.0.1:0", "--ready-delay", "200ms",
				"--env", roleEnv+"="+roles.Use("silent"), "--", self)
			cmd.Args[0] = "hotcluster"
			cmd.Env = append(os.Environ(), append(masterEnv(t), roleEnv+"="+roles.Use("sandboxed-master"), "SANDBOX="+tc.sandbox)...)
			m := startMasterCmd(t, cmd)
			addr := m.listenAddr("web")
			m.waitLine(0, `gen 1 ready in`)
			stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
			m.reload(2)
			m.reload(3)
			assertNoFailures(t, stop())
			assertServedBy(t, "tcp", addr, 3)
			if n := m.count(tc.want); n != 1 {
				t.Errorf("%d lines matching %q, want 1", n, tc.want)
			}
			if n := m.count(`bind interception`); n != 1 {
				t.Errorf("%d lines about bind interception, want 1", n)
			}
		})
	}
}

// A root master's workers run as another user: the shim has no
// CAP_SYS_ADMIN, sets no_new_privs to load the filter, and the master
// says so once. Workers of a root master that stay root do not need it.
func TestUnprivilegedWorkersRunWithNoNewPrivs(t *testing.T) {
	t.Parallel()
	needIntercept(t)
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	// A directory every user can enter, with the C server and the notify
	// sockets' directory in it.
	dir, err := os.MkdirTemp("", "hotcluster-nnp-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tmp := dir + "/tmp"
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := dir + "/cserver"
	copyFile(t, buildC(t), bin)
	for _, tc := range []struct {
		name string
		args []string
		nnp  string
	}{
		{"nobody", []string{"--user", "nobody"}, "1"},
		{"root", nil, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := freePort(t)
			args := append([]string{"--workers", "2", "--listen", "web=127.0.0.1:" + port, "--ready-delay", "10m", "--ready-timeout", "50s"}, tc.args...)
			m := startCommandEnv(t, []string{"TMPDIR=" + tmp}, args, bin, port, "127.0.0.1")
			m.waitLine(0, `gen 1 ready in`)
			assertServedBy(t, "tcp", "127.0.0.1:"+port, 1)
			kids := children(m.pid)
			if len(kids) != 2 {
				t.Fatalf("master has %d children, want 2 workers", len(kids))
			}
			for _, pid := range kids {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				got := regexp.MustCompile(`NoNewPrivs:\s*(\d)`).FindSubmatch(b)
				if got == nil || string(got[1]) != tc.nnp {
					t.Errorf("worker %d: NoNewPrivs %q, want %s", pid, got, tc.nnp)
				}
			}
			want := 0
			if tc.nnp == "1" {
				want = 1
			}
			m.reload(2)
			if n := m.count(`workers run with no_new_privs`); n != want {
				t.Errorf("%d lines about no_new_privs, want %d", n, want)
			}
		})
	}
}
