package handoff

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/safedir"
	"golang.org/x/sys/unix"
)

// The master binds and removes unix socket files, usually as root, so it
// does so only where no other user can swap a name (see package
// internal/safedir): in a directory that only root and this user can
// change, or a sticky one such as /tmp, where others may add names but not
// replace ours. A stale socket of this user's is replaced; any other name
// in the way is an error that names it; at the final stop the file is
// removed only if it still is the socket this master bound.

// unixFile is the socket file a listener bound, for removing that file and
// no other.
type unixFile struct {
	dir, name string
	id        safedir.FileID
}

// openUnixListener binds the listener of a unix socket path.
func openUnixListener(spec Spec) (*listener, error) {
	dir, name := filepath.Split(spec.Addr)
	d, err := safedir.Open(dir, safedir.StickyOK)
	if err != nil {
		return nil, listenError(spec, err)
	}
	defer d.Close()
	if err := removeStale(d, name); err != nil {
		return nil, listenError(spec, err)
	}
	fd, id, err := d.BindUnix(name, unix.SOCK_STREAM, 0)
	if err != nil {
		return nil, listenError(spec, err)
	}
	// The kernel caps the backlog at net.core.somaxconn, which is what Go's
	// net.Listen asks for.
	if err := unix.Listen(fd, math.MaxInt32); err != nil {
		unix.Close(fd)
		d.RemoveIfSame(name, id)
		return nil, listenError(spec, fmt.Errorf("listen: %w", err))
	}
	return &listener{
		spec: spec, mode: Shared, why: "unix socket", addr: spec.Addr,
		socks: []*sock{{rc: rawFD(fd), c: rawFD(fd)}},
		file:  &unixFile{dir: dir, name: name, id: id},
	}, nil
}

// removeStale removes the socket file at name in d that nobody listens on
// any more, as a master that was killed leaves it, if it is this user's.
// Anything else there, a symlink, a file, a socket of another user's, is
// left alone: an error names it.
func removeStale(d *safedir.Dir, name string) error {
	e, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	path := d.Join(name)
	if e.Mode.Type() != fs.ModeSocket || !e.Ours() {
		return &safedir.UnsafeError{Path: path, Reason: fmt.Sprintf("%s is in the way; only a stale socket of this user's (uid %d) is replaced: remove it if nothing needs it, or pick another path", e, os.Geteuid())}
	}
	// A socket of ours, in a directory where no one else can replace it:
	// the dial reaches that socket.
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return syscall.EADDRINUSE
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil // bind says what is wrong
	}
	_, err = d.RemoveIfSame(name, e.ID)
	return err
}

// removeFile removes the socket file the listener bound, if it still is
// that file.
func (l *listener) removeFile() {
	f := l.file
	if f == nil {
		return
	}
	d, err := safedir.Open(f.dir, safedir.StickyOK)
	if err != nil {
		return // someone opened the directory up since: leave the name be
	}
	defer d.Close()
	d.RemoveIfSame(f.name, f.id)
}
