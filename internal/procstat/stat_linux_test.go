package procstat

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// replyTimeout bounds every wait for the helper process to answer.
const replyTimeout = 20 * time.Second

func init() { registerRole("hog", roleHog) }

// roleHog obeys commands read line by line from stdin and answers each on
// stdout once it is done, so the test reads /proc only after the effect:
//
//	touch N  allocate N MiB and write to every page  -> "touched"
//	open     open one more descriptor                -> "opened"
//	spin N   burn at least N ms of CPU time          -> "spun"
//
// It exits 0 at the end of stdin.
func roleHog() int {
	var keep [][]byte
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		n, _ := strconv.Atoi(arg)
		switch cmd {
		case "touch":
			b := make([]byte, n<<20)
			for i := 0; i < len(b); i += os.Getpagesize() {
				b[i] = 1
			}
			keep = append(keep, b)
			fmt.Println("touched")
		case "open":
			// A raw open, not os.Open: an *os.File for a character
			// device may start the runtime's poller, which opens
			// descriptors of its own.
			if _, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Println("opened")
		case "spin":
			if err := spin(time.Duration(n) * time.Millisecond); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Println("spun")
		default:
			fmt.Fprintf(os.Stderr, "unknown command %q\n", in.Text())
			return 2
		}
	}
	_ = keep
	return 0
}

// spin burns CPU until the process has used d more of it, measured by the
// kernel rather than by the wall clock, and gives up after replyTimeout.
func spin(d time.Duration) error {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start, deadline := cpu(), time.Now().Add(replyTimeout)
	x := uint64(1)
	for cpu()-start < d {
		for range 100000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("spin: used %v of CPU in %v, want %v", cpu()-start, replyTimeout, d)
		}
	}
	if x == 0 {
		fmt.Fprintln(os.Stderr, "unreachable, keeps the loop")
	}
	return nil
}

// hog is a running roleHog process.
type hog struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *os.File
	br  *bufio.Reader

	// stop ends the input, then waits for the process to exit and reaps
	// it; it runs once, whoever calls it first.
	stop func() error
}

func startHog(t *testing.T) *hog {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"="+useRole("hog"))
	cmd.Stderr = os.Stderr
	// The helper must not outlive a test binary that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// An os.Pipe of our own rather than StdoutPipe, for its read deadline.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	cmd.WaitDelay = replyTimeout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	h := &hog{t: t, cmd: cmd, in: in, out: out, br: bufio.NewReader(out)}
	h.stop = sync.OnceValue(func() error {
		in.Close()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		defer out.Close()
		select {
		case err := <-waited:
			return err
		case <-time.After(replyTimeout):
			cmd.Process.Kill()
			<-waited
			return fmt.Errorf("hog %d did not exit within %v of the end of its input", cmd.Process.Pid, replyTimeout)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			cmd.Process.Kill()
		}
		if err := h.stop(); err != nil && !t.Failed() {
			t.Errorf("hog: %v", err)
		}
	})
	return h
}

// do sends one command and waits for its answer.
func (h *hog) do(cmd, want string) {
	h.t.Helper()
	if _, err := io.WriteString(h.in, cmd+"\n"); err != nil {
		h.t.Fatalf("hog %s: %v", cmd, err)
	}
	h.out.SetReadDeadline(time.Now().Add(replyTimeout))
	line, err := h.br.ReadString('\n')
	if err != nil {
		h.t.Fatalf("hog %s: reading the answer: %v", cmd, err)
	}
	if got := strings.TrimSpace(line); got != want {
		h.t.Fatalf("hog %s: answered %q, want %q", cmd, got, want)
	}
}

func (h *hog) read() Stat {
	h.t.Helper()
	s, err := Read(h.cmd.Process.Pid)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func TestReadChild(t *testing.T) {
	t.Parallel()
	before := time.Now()
	h := startHog(t)
	pid := h.cmd.Process.Pid

	const mib = 64
	h.do(fmt.Sprintf("touch %d", mib), "touched")
	s1 := h.read()
	if s1.PID != pid {
		t.Errorf("PID = %d, want %d", s1.PID, pid)
	}
	if s1.RSS < mib<<20 {
		t.Errorf("RSS = %d bytes after touching %d MiB", s1.RSS, mib)
	}
	// Boot time has a one-second resolution and start time 10ms ticks.
	if s1.Started.Before(before.Add(-2*time.Second)) || s1.Started.After(time.Now().Add(time.Second)) {
		t.Errorf("Started = %v, want about %v", s1.Started, before)
	}
	self, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s1.Started.Before(self.Started) {
		t.Errorf("child Started %v before parent's %v", s1.Started, self.Started)
	}
	if s1.FDs < 3 {
		t.Errorf("FDs = %d, want at least stdin, stdout and stderr", s1.FDs)
	}

	h.do("open", "opened")
	s2 := h.read()
	if s2.FDs != s1.FDs+1 {
		t.Errorf("FDs = %d after opening one, was %d", s2.FDs, s1.FDs)
	}
	if !s2.Started.Equal(s1.Started) {
		t.Errorf("Started changed from %v to %v", s1.Started, s2.Started)
	}

	s := Sampler{MinInterval: time.Millisecond}
	if got := s.CPUPercent(pid, s2); got != 0 {
		t.Errorf("first CPUPercent = %v, want 0", got)
	}
	const burn = 200 * time.Millisecond
	h.do(fmt.Sprintf("spin %d", burn.Milliseconds()), "spun")
	s3 := h.read()
	// The kernel's tick accounting and getrusage's precise one differ by
	// a few ticks.
	if grew := s3.CPUTime - s2.CPUTime; grew < burn-50*time.Millisecond {
		t.Errorf("CPUTime grew by %v while the child burnt %v", grew, burn)
	}
	pct := s.CPUPercent(pid, s3)
	t.Logf("CPU %.1f%% over %v", pct, s3.At.Sub(s2.At))
	if pct <= 0 {
		t.Errorf("CPUPercent = %v after spinning", pct)
	}

	if s3.Stopped {
		t.Error("a running process reads as stopped")
	}
	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stop is asynchronous: wait for it as a parent does, leaving the
	// state for exec.Cmd's Wait.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if !h.read().Stopped {
		t.Error("a SIGSTOPped process does not read as stopped")
	}
	h.cmd.Process.Signal(syscall.SIGCONT)
}

func TestReadReaped(t *testing.T) {
	t.Parallel()
	h := startHog(t)
	pid := h.cmd.Process.Pid
	if _, err := Read(pid); err != nil {
		t.Fatalf("running process: %v", err)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	_, err := Read(pid)
	if !errors.Is(err, ErrNoProcess) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Read of reaped process %d: %v, want ErrNoProcess and os.ErrNotExist", pid, err)
	}
	t.Log(err)
}

func TestReadNoProcess(t *testing.T) {
	t.Parallel()
	for _, pid := range []int{0, -1} {
		if _, err := Read(pid); !errors.Is(err, ErrNoProcess) {
			t.Errorf("Read(%d) = %v, want ErrNoProcess", pid, err)
		}
	}
}
