package safedir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is an open directory that passed Open's checks. Its methods are safe
// for concurrent use until Close.
type Dir struct {
	fd int // O_PATH|O_DIRECTORY, close-on-exec
	// path is the directory as asked for, absolute and clean: BindUnix
	// binds by it, so that the socket's address reads as the user wrote it.
	path string
	st   unix.Stat_t
}

// Path is the directory as it was asked for, absolute and clean.
func (d *Dir) Path() string { return d.path }

// Join is the path of name in d.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// Stat describes the directory itself.
func (d *Dir) Stat() Entry {
	e, err := statx(d.fd, "")
	if err != nil {
		return entryOf(&d.st)
	}
	return e
}

// Close releases the directory's descriptor.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// maxSymlinks is the kernel's limit on symlinks in one lookup (MAXSYMLINKS).
const maxSymlinks = 40

// Open opens the directory at path and checks it, and every directory and
// symlink on the way to it, with a descriptor per step so that nothing can
// be swapped between a check and the next step. Each directory must belong
// to root or to this process's effective user, and others may write it
// only if it has the sticky bit (then others cannot rename what is below;
// for the last directory only with StickyOK). A symlink is followed only
// if root or this user owns it and it lies in a directory others cannot
// write. A violation is an *UnsafeError; a missing directory is an error
// for which errors.Is(err, fs.ErrNotExist) holds.
func Open(path string, p Policy) (*Dir, error) { return walk(path, p, false, 0) }

// MkdirAll is Open(path, OwnerOnly), but creates missing directories on
// the way, with mode perm less the umask.
func MkdirAll(path string, perm fs.FileMode) (*Dir, error) { return walk(path, OwnerOnly, true, perm) }

// MkdirTemp creates a new directory in parent (the system's temporary
// directory when empty), checked as Open(parent, StickyOK) does, under a
// name made of prefix and a random number. The directory is created
// exclusively, so nothing another user planted can be it, and gets mode
// perm whatever the umask. The caller removes it.
func MkdirTemp(parent, prefix string, perm fs.FileMode) (*Dir, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	p, err := Open(parent, StickyOK)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	var name string
	for try := 0; ; try++ {
		name = prefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		err := unix.Mkdirat(p.fd, name, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || try == 10000 {
			return nil, &fs.PathError{Op: "mkdir", Path: p.Join(name), Err: err}
		}
	}
	d, err := p.sub(name)
	if err == nil {
		err = chmodFD(d.fd, perm)
		if err == nil {
			err = unix.Fstat(d.fd, &d.st)
		}
		if err != nil {
			d.Close()
		}
	}
	if err != nil {
		unix.Unlinkat(p.fd, name, unix.AT_REMOVEDIR)
		return nil, fmt.Errorf("make %s: %w", p.Join(name), err)
	}
	return d, nil
}

// sub opens directory name, which this process just made in d.
func (d *Dir) sub(name string) (*Dir, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	s := &Dir{fd: fd, path: d.Join(name)}
	if err := unix.Fstat(fd, &s.st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: s.path, Err: err}
	}
	if s.st.Uid != uint32(os.Geteuid()) {
		unix.Close(fd)
		return nil, &UnsafeError{Path: s.path, Reason: "directory just made belongs to " + ownerName(s.st.Uid)}
	}
	return s, nil
}

// Mkdir creates directory name in d, exclusively (a name in the way fails
// with an error for which errors.Is(err, fs.ErrExist) holds), and returns
// it open, with its identity for [Dir.RemoveIfSame]. It gets mode perm
// whatever the umask (file systems such as cgroupfs keep their own).
func (d *Dir) Mkdir(name string, perm fs.FileMode) (*Dir, FileID, error) {
	if err := checkName(name); err != nil {
		return nil, FileID{}, err
	}
	if err := unix.Mkdirat(d.fd, name, uint32(perm.Perm())); err != nil {
		return nil, FileID{}, &fs.PathError{Op: "mkdir", Path: d.Join(name), Err: err}
	}
	s, err := d.sub(name)
	var e Entry
	if err == nil {
		if e, err = statx(s.fd, ""); err == nil && e.Mode.Perm() != perm.Perm() {
			// cgroupfs refuses some modes; what it keeps is its own.
			chmodFD(s.fd, perm)
		}
		if err != nil {
			s.Close()
		}
	}
	if err != nil {
		unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
		return nil, FileID{}, fmt.Errorf("make %s: %w", d.Join(name), err)
	}
	return s, e.ID, nil
}

// OpenRead opens the directory itself for reading: a descriptor that
// system calls taking a directory as an object (not as a place to look
// names up) accept, as clone3's CLONE_INTO_CGROUP does; they refuse the
// O_PATH descriptor a Dir holds. The caller closes it.
func (d *Dir) OpenRead() (*os.File, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.path, Err: err}
	}
	return os.NewFile(uintptr(fd), d.path), nil
}

// step is a directory of the walk, open.
type step struct {
	fd   int
	path string // where it really is, for messages
	st   unix.Stat_t
}

func walk(path string, p Policy, create bool, perm fs.FileMode) (*Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", path, err)
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	stack := []step{{fd: root, path: "/"}}
	defer func() {
		for _, s := range stack {
			unix.Close(s.fd)
		}
	}()
	if err := unix.Fstat(root, &stack[0].st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: "/", Err: err}
	}
	if err := checkDir("/", &stack[0].st, false, p); err != nil {
		return nil, err
	}
	comps := strings.Split(abs, "/")
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		cur := stack[len(stack)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(cur.fd)
				stack = stack[:len(stack)-1]
			}
			continue
		}
		name := filepath.Join(cur.path, c)
		var st unix.Stat_t
		err := unix.Fstatat(cur.fd, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(cur.fd, c, uint32(perm.Perm())); err == nil || errors.Is(err, unix.EEXIST) {
				err = unix.Fstatat(cur.fd, c, &st, unix.AT_SYMLINK_NOFOLLOW)
			}
		}
		if err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if writableByOthers(&cur.st) {
				return nil, &UnsafeError{Path: name, Reason: fmt.Sprintf("a symlink in %s, which others can write (mode %04o); give the path without it", cur.path, cur.st.Mode&0o7777)}
			}
			if !trusted(st.Uid) {
				return nil, &UnsafeError{Path: name, Reason: fmt.Sprintf("a symlink of %s; only symlinks of %s are followed", ownerName(st.Uid), trustedNames())}
			}
			if links++; links > maxSymlinks {
				return nil, &fs.PathError{Op: "open", Path: abs, Err: unix.ELOOP}
			}
			target, err := readlinkat(cur.fd, c)
			if err != nil {
				return nil, &fs.PathError{Op: "readlink", Path: name, Err: err}
			}
			if strings.HasPrefix(target, "/") {
				for _, s := range stack[1:] {
					unix.Close(s.fd)
				}
				stack = stack[:1]
			}
			comps = append(strings.Split(target, "/"), comps...)
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, &fs.PathError{Op: "open", Path: name, Err: unix.ENOTDIR}
		}
		fd, err := unix.Openat(cur.fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		stack = append(stack, step{fd: fd, path: name})
		top := &stack[len(stack)-1]
		if err := unix.Fstat(fd, &top.st); err != nil {
			return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
		}
		if top.st.Dev != st.Dev || top.st.Ino != st.Ino {
			return nil, &UnsafeError{Path: name, Reason: "replaced while it was being checked"}
		}
		if err := checkDir(name, &top.st, false, p); err != nil {
			return nil, err
		}
	}
	top := stack[len(stack)-1]
	if err := checkDir(top.path, &top.st, true, p); err != nil {
		return nil, err
	}
	stack = stack[:len(stack)-1] // kept open: the deferred loop leaves it
	return &Dir{fd: top.fd, path: abs, st: top.st}, nil
}

// checkDir applies Open's rules to directory path; last says it is the
// directory asked for.
func checkDir(path string, st *unix.Stat_t, last bool, p Policy) error {
	if !trusted(st.Uid) {
		return &UnsafeError{Path: path, Reason: fmt.Sprintf("directory belongs to %s, who could replace any name in it; use a directory of %s", ownerName(st.Uid), trustedNames())}
	}
	if !writableByOthers(st) {
		return nil
	}
	sticky := st.Mode&unix.S_ISVTX != 0
	switch {
	case sticky && (!last || p == StickyOK):
		return nil
	case sticky:
		return &UnsafeError{Path: path, Reason: fmt.Sprintf("directory is writable by others (mode %04o); only one that no one but its owner can write will do here: chmod go-w it or pick another", st.Mode&0o7777)}
	default:
		return &UnsafeError{Path: path, Reason: fmt.Sprintf("directory is writable by others (mode %04o) without the sticky bit, so any of them could swap names in it: chmod go-w it or pick another", st.Mode&0o7777)}
	}
}

// writableByOthers: its group or everyone may write it. A group is
// counted as others: it may hold users other than root and this one.
func writableByOthers(st *unix.Stat_t) bool { return st.Mode&0o022 != 0 }

func readlinkat(dirfd int, name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		m, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if m < n {
			return string(buf[:m]), nil
		}
	}
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("safedir: %q is not a file name", name)
	}
	return nil
}

// Lstat describes name in d, not following a symlink.
func (d *Dir) Lstat(name string) (Entry, error) {
	if err := checkName(name); err != nil {
		return Entry{}, err
	}
	e, err := statx(d.fd, name)
	if err != nil {
		return Entry{}, &fs.PathError{Op: "lstat", Path: d.Join(name), Err: err}
	}
	return e, nil
}

// RemoveIfSame removes name from d if it still is file id, and reports
// whether it did; a name that is gone or is another file is left alone.
// See the package comment for the race that remains.
func (d *Dir) RemoveIfSame(name string, id FileID) (bool, error) {
	e, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if e.ID != id {
		return false, nil
	}
	flags := 0
	if e.Mode.IsDir() {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(d.fd, name, flags); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, &fs.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return true, nil
}

// maxUnixPath is what sockaddr_un holds, the terminating NUL excluded.
const maxUnixPath = 107

// BindUnix makes a unix socket of type typ (unix.SOCK_STREAM or
// unix.SOCK_DGRAM), non-blocking and close-on-exec, bound to name in d,
// and returns it with the identity of its file. bind creates the file
// exclusively and never follows a symlink: a name in the way fails with
// EADDRINUSE. With perm set the file gets that mode from the start: bind
// gives the file the socket's own inode mode less the umask, and that mode
// is set on the socket first; bits the umask took are put back through the
// file's descriptor. With perm 0 the file gets the kernel's default (0777
// less the umask).
//
// bind takes a path, not a descriptor: the socket is bound by d's path,
// which Open checked leads only through what root and this user control,
// and which must still lead to d.
func (d *Dir) BindUnix(name string, typ int, perm fs.FileMode) (int, FileID, error) {
	if err := checkName(name); err != nil {
		return -1, FileID{}, err
	}
	path := d.Join(name)
	if len(path) > maxUnixPath {
		return -1, FileID{}, fmt.Errorf("bind %s: %d bytes, longer than a unix socket path may be (%d)", path, len(path), maxUnixPath)
	}
	var st unix.Stat_t
	if err := unix.Stat(d.path, &st); err != nil || st.Dev != d.st.Dev || st.Ino != d.st.Ino {
		return -1, FileID{}, &UnsafeError{Path: d.path, Reason: "no longer the directory that was checked"}
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, FileID{}, fmt.Errorf("socket: %w", err)
	}
	fail := func(op string, err error) (int, FileID, error) {
		unix.Close(fd)
		return -1, FileID{}, &fs.PathError{Op: op, Path: path, Err: err}
	}
	if perm != 0 {
		if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
			return fail("chmod socket", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fail("bind", err)
	}
	e, err := d.Lstat(name)
	if err == nil && e.Mode.Type() != fs.ModeSocket {
		err = &UnsafeError{Path: path, Reason: e.String() + " is where the socket was just bound"}
	}
	if err == nil && perm != 0 && e.Mode.Perm() != perm.Perm() {
		err = d.Chmod(name, e.ID, perm)
	}
	if err != nil {
		unix.Close(fd)
		d.RemoveIfSame(name, e.ID)
		return -1, FileID{}, err
	}
	return fd, e.ID, nil
}

// OpenSub opens directory name in d, which must still be file id (as
// [Dir.Mkdir] returned it): the way back to a directory this process made
// without holding a descriptor of it meanwhile.
func (d *Dir) OpenSub(name string, id FileID) (*Dir, error) {
	fd, err := d.openPath(name, id)
	if err != nil {
		return nil, err
	}
	s := &Dir{fd: fd, path: d.Join(name)}
	if err := unix.Fstat(fd, &s.st); err != nil || s.st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		if err == nil {
			err = unix.ENOTDIR
		}
		return nil, &fs.PathError{Op: "open", Path: s.path, Err: err}
	}
	return s, nil
}

// openPath opens name, which must still be file id, as an O_PATH
// descriptor: what is done through it reaches that file, whatever becomes
// of the name.
func (d *Dir) openPath(name string, id FileID) (int, error) {
	if err := checkName(name); err != nil {
		return -1, err
	}
	fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	e, err := statx(fd, "")
	if err != nil {
		unix.Close(fd)
		return -1, &fs.PathError{Op: "stat", Path: d.Join(name), Err: err}
	}
	if e.ID != id || e.Mode.Type() == fs.ModeSymlink {
		unix.Close(fd)
		return -1, &UnsafeError{Path: d.Join(name), Reason: "no longer the file that was made"}
	}
	return fd, nil
}

// Chown gives name in d, which must still be file id, to uid and gid
// (-1 keeps one), without following a symlink.
func (d *Dir) Chown(name string, id FileID, uid, gid int) error {
	fd, err := d.openPath(name, id)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return &fs.PathError{Op: "chown", Path: d.Join(name), Err: err}
	}
	return nil
}

// Chmod sets the mode of name in d, which must still be file id, without
// following a symlink.
func (d *Dir) Chmod(name string, id FileID, perm fs.FileMode) error {
	fd, err := d.openPath(name, id)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := chmodFD(fd, perm); err != nil {
		return &fs.PathError{Op: "chmod", Path: d.Join(name), Err: err}
	}
	return nil
}

// chmodFD sets the mode of the file an O_PATH descriptor holds. fchmod
// refuses O_PATH descriptors and fchmodat2's AT_EMPTY_PATH needs Linux 6.6;
// the descriptor's /proc link reaches the file itself, with no lookup of
// its name (what glibc's fchmodat does for AT_SYMLINK_NOFOLLOW).
func chmodFD(fd int, perm fs.FileMode) error {
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), uint32(perm.Perm()))
}

// OpenFile opens name in d as os.OpenFile does with flag and perm, but
// never through a symlink, and only a regular file of root's or this
// user's (a named pipe does not block the open). A file it creates gets
// mode perm whatever the umask.
func (d *Dir) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, Entry, error) {
	if err := checkName(name); err != nil {
		return nil, Entry{}, err
	}
	path := d.Join(name)
	// O_TRUNC waits for the checks: a file that is refused stays whole.
	base := flag&^os.O_TRUNC | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := -1, error(nil)
	created := false
	if flag&os.O_CREATE != 0 && flag&os.O_EXCL == 0 {
		// Created or not decides whether perm applies: try exclusively.
		if fd, err = unix.Openat(d.fd, name, base|unix.O_EXCL, uint32(perm.Perm())); err == nil {
			created = true
		} else if errors.Is(err, unix.EEXIST) {
			fd, err = unix.Openat(d.fd, name, base&^unix.O_CREAT, 0)
		}
	} else {
		fd, err = unix.Openat(d.fd, name, base, uint32(perm.Perm()))
		created = err == nil && flag&os.O_CREATE != 0
	}
	if err != nil {
		// ELOOP for a symlink, ENXIO for a named pipe nobody reads, ...
		if e, lerr := d.Lstat(name); lerr == nil && !e.Mode.IsRegular() {
			return nil, Entry{}, &UnsafeError{Path: path, Reason: e.String() + " is in the way, not a regular file; remove it or pick another name"}
		}
		return nil, Entry{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	e, err := statx(fd, "")
	if err != nil {
		unix.Close(fd)
		return nil, Entry{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	switch {
	case !e.Mode.IsRegular():
		err = &UnsafeError{Path: path, Reason: e.String() + " is in the way, not a regular file; remove it or pick another name"}
	case !trusted(e.UID):
		err = &UnsafeError{Path: path, Reason: "belongs to " + ownerName(e.UID) + "; only files of " + trustedNames() + " are used"}
	case created && e.Mode.Perm() != perm.Perm():
		if err = unix.Fchmod(fd, uint32(perm.Perm())); err == nil {
			e, err = statx(fd, "")
		}
	}
	if err == nil && flag&os.O_TRUNC != 0 && !created {
		err = unix.Ftruncate(fd, 0)
	}
	if err == nil {
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		unix.Close(fd)
		if created {
			d.RemoveIfSame(name, e.ID)
		}
		return nil, Entry{}, err
	}
	return os.NewFile(uintptr(fd), path), e, nil
}

// OpenFile opens the file at path as os.OpenFile does, in a directory
// that Open(dir, OwnerOnly) accepts, with the rules of [Dir.OpenFile]: the
// way to open a pid, state or log file as root.
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, Entry, error) {
	d, err := Open(filepath.Dir(path), OwnerOnly)
	if err != nil {
		return nil, Entry{}, err
	}
	defer d.Close()
	return d.OpenFile(filepath.Base(path), flag, perm)
}

// statx describes name in dirfd, or dirfd itself when name is empty, not
// following a symlink. The birth time joins the identity where the file
// system keeps it: an inode number freed by a removal is soon reused.
func statx(dirfd int, name string) (Entry, error) {
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_SYNC_AS_STAT
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var sx unix.Statx_t
	if err := unix.Statx(dirfd, name, flags, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx); err != nil {
		return Entry{}, err
	}
	e := entryOf(&unix.Stat_t{
		Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino,
		Mode: uint32(sx.Mode), Uid: sx.Uid, Gid: sx.Gid,
	})
	if sx.Mask&unix.STATX_BTIME != 0 {
		e.ID.Birth = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	return e, nil
}

func entryOf(st *unix.Stat_t) Entry {
	m := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	if st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	return Entry{ID: FileID{Dev: st.Dev, Ino: st.Ino}, Mode: m, UID: st.Uid, GID: st.Gid}
}

// ReadTrusted reads the file at path, at most limit bytes, which says
// what the master does (a config file): in a directory that Open(dir,
// OwnerOnly) accepts, a regular file of root's or this user's that no one
// else may write. A symlink at the name is followed if root or this user
// owns it, and its target is held to the same rules.
func ReadTrusted(path string, limit int64) ([]byte, Entry, error) {
	for links := 0; ; links++ {
		d, err := Open(filepath.Dir(path), OwnerOnly)
		if err != nil {
			return nil, Entry{}, err
		}
		name := filepath.Base(path)
		e, err := d.Lstat(name)
		if err == nil && e.Mode.Type() == fs.ModeSymlink && trusted(e.UID) && links < maxSymlinks {
			target, err := readlinkat(d.fd, name)
			d.Close()
			if err != nil {
				return nil, Entry{}, &fs.PathError{Op: "readlink", Path: path, Err: err}
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(path), target)
			}
			path = target
			continue
		}
		f, e, err := d.OpenFile(name, os.O_RDONLY, 0)
		d.Close()
		if err != nil {
			return nil, Entry{}, err
		}
		defer f.Close()
		if e.Mode.Perm()&0o022 != 0 {
			return nil, Entry{}, &UnsafeError{Path: path, Reason: fmt.Sprintf("mode %s lets others change it; chmod go-w it", e.Mode.Perm())}
		}
		b, err := io.ReadAll(io.LimitReader(f, limit+1))
		if err != nil {
			return nil, Entry{}, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if int64(len(b)) > limit {
			return nil, Entry{}, fmt.Errorf("read %s: larger than %d bytes", path, limit)
		}
		return b, e, nil
	}
}
