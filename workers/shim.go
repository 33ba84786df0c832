package workers

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"github.com/hotcluster/hotcluster/internal/protocol"
)

// The parent-death signal is a property of one thread, and execve from a
// thread other than the leader makes that thread the process: a shim that
// execs from another thread would lose the SIGKILL the master's death must
// send (workers outliving a SIGKILLed master were seen in tests). So the
// shim's main goroutine keeps the main thread, and ExecShim sets the signal
// again on the thread that execs.
func init() {
	if IsShim() {
		runtime.LockOSThread()
	}
}

// shimArg0 is argv[0] of the shim, visible in ps for the instant it lives.
const shimArg0 = "hotcluster-shim"

// IsShim reports whether this process was started as the LISTEN_PID shim
// and must call [ExecShim] before doing anything else.
func IsShim() bool { return os.Getenv(protocol.EnvShim) != "" }

// ExecShim replaces the process with the worker's command, keeping its PID,
// after setting LISTEN_PID to that PID and, when the master asked for it,
// loading the bind interception filter (see Config.Intercept). Go cannot
// run code between fork and exec, so the master starts its own binary as
// this shim (argv: shim name, executable path, the command's argv). It returns only on failure, with the
// exit code to use; the message is on stderr, where the master's failure
// report quotes it.
func ExecShim() int {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "hotcluster-shim: missing command")
		return 127
	}
	v := os.Getenv(protocol.EnvShim)
	os.Unsetenv(protocol.EnvShim)
	master, err := strconv.Atoi(v)
	if err != nil || master <= 0 {
		fmt.Fprintf(os.Stderr, "hotcluster-shim: %s=%q: want the master's PID\n", protocol.EnvShim, v)
		return 127
	}
	if os.Getenv(protocol.EnvListenFds) != "" {
		os.Setenv(protocol.EnvListenPID, strconv.Itoa(os.Getpid()))
	}
	if os.Getenv(protocol.EnvWatchdogUsec) != "" {
		os.Setenv(protocol.EnvWatchdogPID, strconv.Itoa(os.Getpid()))
	}
	path, argv := os.Args[1], os.Args[2:]
	runtime.LockOSThread()
	if err := armParentDeath(); err != nil {
		fmt.Fprintf(os.Stderr, "hotcluster-shim: set parent-death signal: %v\n", err)
		return 127
	}
	// Compared with the PID the master gave, not with 1: a master that is
	// PID 1 (a container's) is the parent 1, and a master that died is
	// replaced as the parent by a subreaper or init, whatever its PID.
	if ppid := os.Getppid(); ppid != master {
		fmt.Fprintf(os.Stderr, "hotcluster-shim: the master (pid %d) exited before the worker started (parent now pid %d)\n", master, ppid)
		return 127
	}
	if err := shimIntercept(); err != nil {
		fmt.Fprintf(os.Stderr, "hotcluster-shim: %v\n", err)
		return 127
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "hotcluster-shim: exec %s: %v\n", path, err)
	return 127
}
