package sockowner

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A socket held by this process and by a child it passed it to: both are
// found, with their command lines, and the child's ancestors lead here.
func TestFind(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ino := inode(t, f)

	cmd := exec.Command("sleep", "60")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The child holds the socket once it has exec'd: wait for its
	// command line to be sleep's (bounded).
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := Describe(cmd.Process.Pid)
		if err == nil && strings.HasPrefix(p.Command, "sleep ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d never ran sleep: %+v, %v", cmd.Process.Pid, p, err)
		}
		time.Sleep(time.Millisecond)
	}

	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	of, _ := other.(*net.TCPListener).File()
	defer of.Close()
	unheld := uint64(1<<62 + 7)

	got := Find(ino, inode(t, of), unheld)
	procs := got[ino]
	if len(procs) != 2 || procs[0].PID > procs[1].PID {
		t.Fatalf("Find(%d) = %+v, want this process and the child, in PID order", ino, procs)
	}
	var self, child Process
	for _, p := range procs {
		switch p.PID {
		case os.Getpid():
			self = p
		case cmd.Process.Pid:
			child = p
		}
	}
	if self.PID == 0 || child.PID == 0 {
		t.Fatalf("Find(%d) = %+v, want pids %d and %d", ino, procs, os.Getpid(), cmd.Process.Pid)
	}
	if child.Command != "sleep 60" || child.PPID != os.Getpid() {
		t.Errorf("child = %+v, want command \"sleep 60\" and parent %d", child, os.Getpid())
	}
	if self.Command != strings.Join(os.Args, " ") && !strings.HasSuffix(self.Command, "…") {
		t.Errorf("this process = %+v, want command %q", self, strings.Join(os.Args, " "))
	}
	if len(got[inode(t, of)]) != 1 {
		t.Errorf("the other socket: %+v, want this process alone", got[inode(t, of)])
	}
	if _, ok := got[unheld]; ok {
		t.Errorf("an inode nobody holds was found: %+v", got[unheld])
	}
	if a := Ancestors(cmd.Process.Pid); len(a) == 0 || a[0] != os.Getpid() || !slices.Contains(a, os.Getppid()) {
		t.Errorf("Ancestors(%d) = %v, want %d, then %d", cmd.Process.Pid, a, os.Getpid(), os.Getppid())
	}
	if s := child.String(); s != "pid "+strconv.Itoa(child.PID)+" (sleep 60)" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseStat(t *testing.T) {
	for _, tt := range []struct {
		in, comm string
		ppid     int
		bad      bool
	}{
		{in: "1234 (python3) S 99 1234 1234 0 -1", comm: "python3", ppid: 99},
		{in: "7 (a b) c)) R 1 7 7", comm: "a b) c)", ppid: 1},
		{in: "8 () Z 2 0", comm: "", ppid: 2},
		{in: "9 (x) S", bad: true},
		{in: "9 x S 1", bad: true},
		{in: "9 (x) S one", bad: true},
	} {
		comm, ppid, err := parseStat([]byte(tt.in))
		if tt.bad {
			if err == nil {
				t.Errorf("parseStat(%q) = %q, %d; want an error", tt.in, comm, ppid)
			}
			continue
		}
		if err != nil || comm != tt.comm || ppid != tt.ppid {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d", tt.in, comm, ppid, err, tt.comm, tt.ppid)
		}
	}
}

func TestFindNothing(t *testing.T) {
	if got := Find(); len(got) != 0 {
		t.Errorf("Find() = %v", got)
	}
}
