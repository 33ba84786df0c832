package rescue

import (
	"bufio"
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// A stopped worker whose stop signal has a handler keeps the signal
// pending until it is continued: signalled sees it then, not before, and
// the worker, once continued, takes it. A worker that is gone counts as
// signalled.
func TestSignalledSeesTheStopSignalOfAStoppedWorker(t *testing.T) {
	cmd := exec.Command("sh", "-c", `trap 'exit 7' TERM; echo ready; read x`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Process.Kill()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the shell said %q, %v", line, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if !allStopped(pid, time.Now().Add(10*time.Second)) {
		t.Fatal("the shell did not stop")
	}
	if signalled(pid) {
		t.Fatal("signalled before any signal was sent")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !signalled(pid) {
		t.Fatal("a SIGTERM pending on the stopped shell was not seen")
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Fatalf("the continued shell ended with %v; want its trap's exit 7", err)
	}
	if !signalled(pid) {
		t.Fatal("a worker that is gone does not count as signalled")
	}
}
