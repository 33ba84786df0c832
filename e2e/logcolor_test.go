package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openTerminal opens a pseudo-terminal: its controlling side, which the
// test reads, and the terminal, for a child's stdout and stderr. Output
// post-processing is off, so that lines end in "\n" as written.
func openTerminal(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	var n int
	ptyControl(t, ptmx, func(fd int) (err error) {
		if err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err == nil {
			n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		}
		return err
	})
	tty, err = os.OpenFile(filepath.Join("/dev/pts", strconv.Itoa(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ptyControl(t, tty, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		tio.Oflag &^= unix.OPOST
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	})
	return ptmx, tty
}

// ptyControl runs fn on f's descriptor through SyscallConn (Fd would make
// f blocking, and its read deadline would not work).
func ptyControl(t *testing.T, f *os.File, fn func(fd int) error) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatalf("terminal %s: %v", f.Name(), ferr)
	}
}

// A master whose stdout and stderr are a terminal paints each worker's
// prefix in its slot's colour, the same across generations, and err in
// red; NO_COLOR turns colours off.
func TestWorkerColoursOnTerminal(t *testing.T) {
	t.Parallel()
	for _, noColor := range []bool{false, true} {
		t.Run(fmt.Sprintf("NO_COLOR=%v", noColor), func(t *testing.T) {
			t.Parallel()
			ptmx, tty := openTerminal(t)
			self, _ := os.Executable()
			env := append(append(os.Environ(), masterEnv(t)...), "XDG_RUNTIME_DIR="+t.TempDir())
			env = withoutEnv(env, "NO_COLOR")
			if noColor {
				env = append(env, "NO_COLOR=1")
			}
			cmd := exec.Command(self)
			cmd.Args = []string{"hotcluster", "run", "--log-time=false", "--env", roleEnv + "=log-printer", "--workers", "2",
				"--listen", "web=127.0.0.1:0", "--", self}
			cmd.Env = env
			noteRoles(cmd.Args, cmd.Env)
			cmd.Stdout, cmd.Stderr = tty, tty
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			tty.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(testTimeout / 2):
					syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					<-done
				}
			})

			// The lines of both slots on both streams, as the terminal
			// shows them.
			want := map[string]*regexp.Regexp{}
			for slot := 0; slot < 2; slot++ {
				out, errl := fmt.Sprintf(`\[g1 w%d\] out: hello from g1 w%d`, slot, slot), fmt.Sprintf(`\[g1 w%d err\] err: trouble in g1 w%d`, slot, slot)
				if !noColor {
					// ESC [ colour m [g1 w0] ESC [0m, and err in red inside.
					out = fmt.Sprintf(`\x1b\[(\d+)m\[g1 w%d\]\x1b\[0m out: hello from g1 w%d`, slot, slot)
					errl = fmt.Sprintf(`\x1b\[(\d+)m\[g1 w%d \x1b\[31merr\x1b\[(\d+)m\]\x1b\[0m err: trouble in g1 w%d`, slot, slot)
				}
				want[fmt.Sprintf("out%d", slot)] = regexp.MustCompile(`^` + out + `$`)
				want[fmt.Sprintf("err%d", slot)] = regexp.MustCompile(`^` + errl + `$`)
			}
			got := map[string][]string{}
			ptmx.SetReadDeadline(time.Now().Add(testTimeout))
			br := bufio.NewReader(ptmx)
			var seen []string
			for len(got) < len(want) {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("terminal output ended (%v) with %d of %d lines matched:\n%q", err, len(got), len(want), seen)
				}
				line = strings.TrimSuffix(line, "\n")
				seen = append(seen, line)
				if !noColor && strings.Contains(line, "[g1 w") && !strings.Contains(line, "\x1b[") {
					t.Errorf("a worker line without colour on a terminal: %q", line)
				}
				if noColor && strings.Contains(line, "\x1b[") {
					t.Errorf("a colour with NO_COLOR: %q", line)
				}
				for k, rx := range want {
					if sm := rx.FindStringSubmatch(line); sm != nil {
						got[k] = sm
					}
				}
			}
			if noColor {
				return
			}
			// One colour per slot, on both of its streams; two slots, two
			// colours.
			for slot := 0; slot < 2; slot++ {
				o, e := got[fmt.Sprintf("out%d", slot)], got[fmt.Sprintf("err%d", slot)]
				if o[1] != e[1] || e[1] != e[2] || o[1] == "31" {
					t.Errorf("slot %d: colour %s on stdout, %s/%s on stderr; want one colour, not red", slot, o[1], e[1], e[2])
				}
			}
			if got["out0"][1] == got["out1"][1] {
				t.Errorf("slots 0 and 1 share colour %s", got["out0"][1])
			}
			// The next generation's slot 0 has slot 0's colour.
			syscall.Kill(cmd.Process.Pid, syscall.SIGHUP)
			rx := regexp.MustCompile(`^\x1b\[(\d+)m\[g2 w0\]\x1b\[0m out: hello from g2 w0$`)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("terminal output ended (%v) before generation 2's slot 0", err)
				}
				if sm := rx.FindStringSubmatch(strings.TrimSuffix(line, "\n")); sm != nil {
					if sm[1] != got["out0"][1] {
						t.Errorf("slot 0 of generation 2 in colour %s, of generation 1 in %s", sm[1], got["out0"][1])
					}
					break
				}
			}
		})
	}
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
