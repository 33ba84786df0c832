package keeper

import (
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadProtocol(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		"cgroup /sys/fs/cgroup/a b/hotcluster-1",
		"worker 10", "worker 11", "-worker 10", "worker 1", "worker x",
		"orphan 20 12345", "orphan 21 5", "-orphan 21", "orphan 22",
		"socket 7", "socket 7", "socket 8",
		"hold", "unhold", "handover", "nonsense",
	}, "\n") + "\n"
	s, err := read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if s.cgroup != "/sys/fs/cgroup/a b/hotcluster-1" || len(s.workers) != 1 || !s.workers[11] ||
		len(s.orphans) != 1 || s.orphans[20] != 12345 || !slices.Equal(s.sockets, []uint64{7, 8}) ||
		s.hold || !s.handover || s.exit {
		t.Fatalf("read = %+v", s)
	}
	s, _ = read(strings.NewReader("worker 10\nexit\n"))
	if !s.exit {
		t.Fatal("exit not read")
	}
}

// holder is sleep holding a file as fd 3.
type holderProc struct {
	*exec.Cmd
	done chan error
}

// holder starts sleep holding f as fd 3, in a process group of its own
// (group) or in the test's.
func holder(t *testing.T, f *os.File, group bool) *holderProc {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: group}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holderProc{cmd, make(chan error, 1)}
	go func() { h.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-h.done
		h.done <- nil // for a second cleanup's look
	})
	return h
}

// killed waits (bounded) for h to end and reports whether SIGKILL ended it.
func killed(t *testing.T, h *holderProc) bool {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err
		return err != nil && strings.Contains(err.Error(), "signal: killed")
	case <-time.After(30 * time.Second):
		return false
	}
}

// With no cgroup tree, a killed master's keeper kills whoever holds one of
// its sockets in another process group, and spares its master's group (a
// new master of an upgrade, the keeper's own caller here).
func TestKillSocketHolders(t *testing.T) {
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
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stray := holder(t, f, true)
	ours := holder(t, f, false)
	// Until the holders exist in /proc with the socket open.
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, _ := os.Readlink("/proc/" + itoa(stray.Process.Pid) + "/fd/3")
		b, _ := os.Readlink("/proc/" + itoa(ours.Process.Pid) + "/fd/3")
		if strings.HasPrefix(a, "socket:") && strings.HasPrefix(b, "socket:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holders never held the socket")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := &state{workers: map[int]bool{}, orphans: map[int]uint64{}, sockets: []uint64{st.Ino}}
	got := s.kill(0, syscall.Getpgrp(), slog.New(slog.DiscardHandler))
	if len(got) != 1 || !strings.Contains(got[0], itoa(stray.Process.Pid)) || !strings.Contains(got[0], "held a listening socket") {
		t.Fatalf("kill = %q, want the stray holder (pid %d) only", got, stray.Process.Pid)
	}
	if !killed(t, stray) {
		t.Fatal("the stray holder was not killed")
	}
	if syscall.Kill(ours.Process.Pid, 0) != nil {
		t.Fatal("a holder in the master's process group was killed")
	}
	// During an upgrade the sockets are the new master's too: no sweep.
	stray2 := holder(t, f, true)
	s.hold = true
	if got := s.kill(0, syscall.Getpgrp(), slog.New(slog.DiscardHandler)); len(got) != 0 {
		t.Fatalf("kill during an upgrade = %q, want nothing", got)
	}
	if syscall.Kill(stray2.Process.Pid, 0) != nil {
		t.Fatal("a holder was killed during an upgrade")
	}
}

// Orphans are killed only if their PID still names the process that
// started at the time the master gave: a reused PID is spared.
func TestKillOrphansByStartTime(t *testing.T) {
	a := exec.Command("sleep", "1000")
	b := exec.Command("sleep", "1000")
	for _, c := range []*exec.Cmd{a, b} {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		c := c
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	sa, ok1 := startOf(a.Process.Pid)
	sb, ok2 := startOf(b.Process.Pid)
	if !ok1 || !ok2 {
		t.Fatal("no start time")
	}
	s := &state{workers: map[int]bool{}, orphans: map[int]uint64{a.Process.Pid: sa, b.Process.Pid: sb + 1}}
	got := s.kill(0, syscall.Getpgrp(), slog.New(slog.DiscardHandler))
	if len(got) != 1 || !strings.HasPrefix(got[0], "pid "+itoa(a.Process.Pid)+" (sleep)") {
		t.Fatalf("kill = %q, want pid %d only", got, a.Process.Pid)
	}
	if err := a.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("a: %v, want killed", err)
	}
	if syscall.Kill(b.Process.Pid, 0) != nil {
		t.Fatal("a process whose start time differs was killed")
	}
}

// A worker's process group is killed whole.
func TestKillWorkerGroups(t *testing.T) {
	w := exec.Command("/bin/sh", "-c", "sleep 1000 & echo $!; wait")
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := w.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-w.Process.Pid, syscall.SIGKILL); w.Wait() })
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	child := strings.TrimSpace(string(buf[:n]))
	s := &state{workers: map[int]bool{w.Process.Pid: true}, orphans: map[int]uint64{}}
	got := s.kill(0, syscall.Getpgrp(), slog.New(slog.DiscardHandler))
	if len(got) != 2 || !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "pid "+child+" (sleep)") }) {
		t.Fatalf("kill = %q, want the shell and its sleep (pid %s)", got, child)
	}
	if err := w.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("worker: %v, want killed", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
