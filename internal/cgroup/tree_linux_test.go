package cgroup

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openTree makes a tree for a test, or skips where this machine allows
// none (not root, a read-only cgroup file system, no unified hierarchy):
// a platform limit, named.
func openTree(t *testing.T) *Tree {
	t.Helper()
	tr, err := Open("hotcluster-test-" + strconv.Itoa(os.Getpid()))
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no cgroup tree can be made here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := tr.Close(10 * time.Second); err != nil {
			t.Errorf("close tree: %v", err)
		}
		if _, err := os.Stat(tr.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("tree %s still there after Close: %v", tr.Path(), err)
		}
	})
	return tr
}

// startIn starts sh -c script in leaf l and returns its PID and the first
// line it prints.
func startIn(t *testing.T, l *Leaf, script string) (int, string) {
	t.Helper()
	cg, err := l.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pid, _, err := syscall.StartProcess("/bin/sh", []string{"sh", "-c", script}, &syscall.ProcAttr{
		Files: []uintptr{0, w.Fd(), 2},
		Sys:   &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())},
	})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	})
	r.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("read from the process: %v", err)
	}
	return pid, strings.TrimSpace(line)
}

// gone waits (bounded) until pid no longer exists or is a zombie.
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still running after the kill", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLeafKillsWhatDetached(t *testing.T) {
	t.Parallel()
	tr := openTree(t)
	l, err := tr.Leaf("w0")
	if err != nil {
		t.Fatal(err)
	}
	// A child in a session of its own: out of the process group, so no
	// kill(-pgid) reaches it.
	pid, line := startIn(t, l, "setsid sleep 1000 & echo $!; exec sleep 1000")
	detached, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("first line %q: %v", line, err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || !strings.Contains(string(b), "/"+filepath.Base(tr.Path())+"/w0\n") {
		t.Fatalf("the process is not in its leaf from the start: %q, %v", b, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(l.Procs()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("leaf lists %v, want the process and its detached child", l.Procs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Kill(); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("process: %v, %v; want killed by SIGKILL", ws, err)
	}
	gone(t, detached)
	if err := l.Remove(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leaf still there after Remove: %v", err)
	}
}

func TestTreeCloseKillsTheRest(t *testing.T) {
	t.Parallel()
	tr := openTree(t)
	l, err := tr.Leaf("w1")
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := startIn(t, l, "echo started; exec sleep 1000")
	killed, err := tr.Close(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || killed[0] != pid {
		t.Fatalf("Close killed %v, want [%d]", killed, pid)
	}
	gone(t, pid)
	if _, err := os.Stat(tr.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there after Close: %v", err)
	}
}

func TestRemoveTreeByPath(t *testing.T) {
	t.Parallel()
	tr := openTree(t)
	l, err := tr.Leaf("w2")
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := startIn(t, l, "echo started; exec sleep 1000")
	killed, err := RemoveTree(tr.Path(), 10*time.Second)
	if err != nil || len(killed) != 1 || killed[0] != pid {
		t.Fatalf("RemoveTree = %v, %v; want [%d] killed", killed, err, pid)
	}
	gone(t, pid)
	if _, err := os.Stat(tr.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there after RemoveTree: %v", err)
	}
}
