package testroles

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// OnTerminal runs cmd (not started) with its standard output on a new
// pseudo-terminal of cols columns, waits for it, and returns what it
// printed, as the program wrote it (no "\n" made "\r\n"). For the tests of
// what a program does on a terminal: help wrapped to its width, colours.
func OnTerminal(t testing.TB, cols int, cmd *exec.Cmd) string {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	var n int
	fdControl(t, ptmx, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	})
	tty, err := os.OpenFile(filepath.Join("/dev/pts", strconv.Itoa(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	fdControl(t, tty, func(fd int) error {
		if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: uint16(cols)}); err != nil {
			return err
		}
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		tio.Oflag &^= unix.OPOST
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	})
	cmd.Stdout = tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	// The read ends (EIO) once the child, the last holder of the
	// terminal's other side, has exited.
	ptmx.SetReadDeadline(time.Now().Add(time.Minute))
	out, _ := io.ReadAll(ptmx)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%q on a terminal: %v", cmd.Args, err)
	}
	return string(out)
}

// fdControl runs fn on f's descriptor, through SyscallConn: Fd would make
// the file blocking, and its read deadline would not work.
func fdControl(t testing.TB, f *os.File, fn func(fd int) error) {
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
