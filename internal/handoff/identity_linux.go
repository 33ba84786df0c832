package handoff

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sockInode returns the inode of the socket behind rc, 0 if unknown.
func sockInode(rc syscall.RawConn) uint64 {
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return 0
	}
	return st.Ino
}
