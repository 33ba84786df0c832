package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/scripts/internal/benchproc"
)

// proc is a process the driver started.
type proc = benchproc.Proc

const killWait = benchproc.KillWait

var (
	startProc    = benchproc.Start
	childEnv     = benchproc.ChildEnv
	describeExit = benchproc.DescribeExit
	freePort     = benchproc.FreePort
)

// reapLeftovers waits up to wait for the app processes seen answering to
// disappear, then SIGKILLs those still running. The app processes are
// started by the tool (hotcluster or air), not by the driver, but must not
// outlive it; a leftover is reported as an error, never hidden. A PID is only
// signalled if its command line holds "-id <runID>", so a recycled PID is
// left alone.
func reapLeftovers(pids map[int]bool, runID string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var left []int
	for {
		left = left[:0]
		for pid := range pids {
			if isApp(pid, runID) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) == 0 {
		return nil
	}
	slices.Sort(left)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("app processes %v outlived their tool by %v; killed them", left, wait)
}

// isApp reports whether pid runs the app of this run (and is not a zombie).
func isApp(pid int, runID string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return false
	}
	return bytes.Contains(b, []byte("\x00-id\x00"+runID+"\x00"))
}
