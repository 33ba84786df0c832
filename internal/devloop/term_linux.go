package devloop

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// ReadKeys calls trigger for each line "r" typed on the terminal fd, until
// ctx ends. It polls rather than blocking in read, so that it returns when
// asked to, and it leaves the terminal's flags alone (they are shared with
// the shell).
func ReadKeys(ctx context.Context, fd int, trigger func()) error {
	buf := make([]byte, 256)
	var line strings.Builder
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		n, err := unix.Poll(fds, 100)
		if errors.Is(err, unix.EINTR) || n == 0 {
			continue
		}
		if err != nil {
			return err
		}
		if fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 && fds[0].Revents&unix.POLLIN == 0 {
			return nil
		}
		m, err := unix.Read(fd, buf)
		if m <= 0 || err != nil {
			return nil // end of input: nothing more to read
		}
		for _, c := range buf[:m] {
			if c != '\n' {
				line.WriteByte(c)
				continue
			}
			if strings.TrimSpace(line.String()) == "r" {
				trigger()
			}
			line.Reset()
		}
	}
	return nil
}

// buildProcAttr puts a build in its own process group, so that cancelling
// it kills the compiler too, and has it die with the master.
func buildProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
