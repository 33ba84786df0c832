package master

import (
	"os"
	"strconv"
	"syscall"
)

// closeOnExecInherited marks every descriptor above stderr close-on-exec.
// Whatever the master inherited without that flag (from a shell, a CI
// runner, a careless parent) would otherwise leak into every worker. The
// descriptors stay open here: tableflip and socket activation still read
// theirs, and pass them on explicitly.
func closeOnExecInherited() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
