package safedir

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nobody returns the uid and gid of user nobody, for files planted as
// another user; the test is skipped where that cannot be done.
func nobody(t *testing.T) (int, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to plant files as another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody to plant files as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// mkdir makes dir with exactly mode.
func mkdir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// As a number, so that 0o1777 is the sticky bit (os.Chmod wants
	// os.ModeSticky).
	if err := unix.Chmod(dir, uint32(mode)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

func chown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func TestOpenChecksTheWholePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy Policy
		// setup makes what the case needs in base and returns the path to
		// open, and the path the error must name.
		setup func(t *testing.T, base string) (path, culprit string)
		want  string // in the error; empty: Open succeeds
	}{
		{"private", OwnerOnly, func(t *testing.T, b string) (string, string) {
			return mkdir(t, b+"/d", 0o700), ""
		}, ""},
		{"others may read and enter", OwnerOnly, func(t *testing.T, b string) (string, string) {
			return mkdir(t, b+"/d", 0o755), ""
		}, ""},
		{"group may write", OwnerOnly, func(t *testing.T, b string) (string, string) {
			d := mkdir(t, b+"/d", 0o770)
			return d, d
		}, "writable by others (mode 0770) without the sticky bit"},
		{"everyone may write", StickyOK, func(t *testing.T, b string) (string, string) {
			d := mkdir(t, b+"/d", 0o777)
			return d, d
		}, "writable by others (mode 0777) without the sticky bit"},
		{"sticky, owner only", OwnerOnly, func(t *testing.T, b string) (string, string) {
			d := mkdir(t, b+"/d", 0o1777)
			return d, d
		}, "writable by others (mode 1777); only one that no one but its owner can write will do here"},
		{"sticky, sticky allowed", StickyOK, func(t *testing.T, b string) (string, string) {
			return mkdir(t, b+"/d", 0o1777), ""
		}, ""},
		{"below a sticky directory", OwnerOnly, func(t *testing.T, b string) (string, string) {
			mkdir(t, b+"/tmp", 0o1777)
			return mkdir(t, b+"/tmp/d", 0o700), ""
		}, ""},
		{"below a directory everyone may write", OwnerOnly, func(t *testing.T, b string) (string, string) {
			mkdir(t, b+"/open", 0o777)
			return mkdir(t, b+"/open/d", 0o700), b + "/open"
		}, "writable by others (mode 0777) without the sticky bit"},
		{"symlink to a private directory", OwnerOnly, func(t *testing.T, b string) (string, string) {
			mkdir(t, b+"/real", 0o700)
			return symlink(t, "real", b+"/link"), ""
		}, ""},
		{"symlinked ancestor", OwnerOnly, func(t *testing.T, b string) (string, string) {
			mkdir(t, b+"/real", 0o755)
			mkdir(t, b+"/real/d", 0o700)
			symlink(t, b+"/real", b+"/link")
			return b + "/link/d", ""
		}, ""},
		{"symlink up and over with ..", OwnerOnly, func(t *testing.T, b string) (string, string) {
			mkdir(t, b+"/a", 0o755)
			mkdir(t, b+"/b", 0o700)
			symlink(t, "../b", b+"/a/up")
			return b + "/a/up", ""
		}, ""},
		{"symlinked ancestor leading to a directory everyone may write", OwnerOnly, func(t *testing.T, b string) (string, string) {
			mkdir(t, b+"/open", 0o777)
			mkdir(t, b+"/open/d", 0o700)
			symlink(t, b+"/open", b+"/link")
			return b + "/link/d", b + "/open"
		}, "writable by others (mode 0777) without the sticky bit"},
		{"symlink in a sticky directory", StickyOK, func(t *testing.T, b string) (string, string) {
			mkdir(t, b+"/tmp", 0o1777)
			mkdir(t, b+"/real", 0o700)
			l := symlink(t, b+"/real", b+"/tmp/link")
			return l, l
		}, "a symlink in " + "BASE/tmp, which others can write (mode 1777)"},
		{"symlink loop", OwnerOnly, func(t *testing.T, b string) (string, string) {
			symlink(t, "y", b+"/x")
			symlink(t, "x", b+"/y")
			return b + "/x", ""
		}, "too many levels of symbolic links"},
		{"missing", OwnerOnly, func(t *testing.T, b string) (string, string) {
			return b + "/none/d", ""
		}, "no such file or directory"},
		{"a file", OwnerOnly, func(t *testing.T, b string) (string, string) {
			if err := os.WriteFile(b+"/f", nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return b + "/f", ""
		}, "not a directory"},
		{"belongs to another user", OwnerOnly, func(t *testing.T, b string) (string, string) {
			uid, gid := nobody(t)
			d := mkdir(t, b+"/d", 0o700)
			chown(t, d, uid, gid)
			return d, d
		}, "directory belongs to uid 65534 (nobody), who could replace any name in it"},
		{"ancestor belongs to another user", OwnerOnly, func(t *testing.T, b string) (string, string) {
			uid, gid := nobody(t)
			home := mkdir(t, b+"/home", 0o755)
			chown(t, home, uid, gid)
			mkdir(t, b+"/home/d", 0o700)
			return b + "/home/d", home
		}, "belongs to uid 65534 (nobody)"},
		{"symlink of another user", OwnerOnly, func(t *testing.T, b string) (string, string) {
			uid, gid := nobody(t)
			mkdir(t, b+"/real", 0o700)
			l := symlink(t, b+"/real", b+"/link")
			chown(t, l, uid, gid)
			return l, l
		}, "a symlink of uid 65534 (nobody); only symlinks of root are followed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			path, culprit := tc.setup(t, base)
			d, err := Open(path, tc.policy)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open(%s): %v", path, err)
				}
				defer d.Close()
				want, _ := os.Stat(path)
				if st := d.Stat(); !os.SameFile(want, fileInfo(t, path)) || st.Mode != want.Mode() {
					t.Errorf("Open(%s) holds %+v, want the directory %v", path, st, want.Mode())
				}
				if d.Path() != filepath.Clean(path) {
					t.Errorf("Path() = %s, want %s", d.Path(), path)
				}
				return
			}
			if err == nil {
				d.Close()
				t.Fatalf("Open(%s) succeeded, want %q", path, tc.want)
			}
			if want := strings.ReplaceAll(tc.want, "BASE", base); !strings.Contains(err.Error(), want) {
				t.Errorf("Open(%s) = %v, want %q", path, err, want)
			}
			var ue *UnsafeError
			if culprit != "" && (!errors.As(err, &ue) || ue.Path != culprit) {
				t.Errorf("Open(%s) = %#v, want an *UnsafeError naming %s", path, err, culprit)
			}
			if tc.name == "missing" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Open(%s) = %v, want fs.ErrNotExist", path, err)
			}
		})
	}
}

func fileInfo(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// A directory that disappears under a symlink after the check is not
// followed: the Dir keeps the directory that was checked.
func TestDirKeepsTheCheckedDirectory(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	d, err := Open(mkdir(t, base+"/d", 0o700), OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := os.Rename(base+"/d", base+"/moved"); err != nil {
		t.Fatal(err)
	}
	mkdir(t, base+"/other", 0o700)
	symlink(t, base+"/other", base+"/d")
	if _, _, err := d.BindUnix("s", unix.SOCK_DGRAM, 0o600); err == nil || !strings.Contains(err.Error(), "no longer the directory that was checked") {
		t.Errorf("BindUnix after the directory moved: %v", err)
	}
	f, _, err := d.OpenFile("f", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := os.Stat(base + "/moved/f"); err != nil {
		t.Errorf("the file went elsewhere than the checked directory: %v", err)
	}
}

func TestMkdirTemp(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	// Sticky like /tmp: allowed as the parent.
	tmp := mkdir(t, base+"/tmp", 0o1777)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		d, err := MkdirTemp(tmp, "x-", 0o711)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		fi := fileInfo(t, d.Path())
		if fi.Mode() != fs.ModeDir|0o711 || !strings.HasPrefix(filepath.Base(d.Path()), "x-") || filepath.Dir(d.Path()) != tmp {
			t.Errorf("MkdirTemp made %s, %v", d.Path(), fi.Mode())
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() {
			t.Errorf("%s belongs to uid %d", d.Path(), st.Uid)
		}
		if seen[d.Path()] {
			t.Errorf("%s made twice", d.Path())
		}
		seen[d.Path()] = true
	}
	open := mkdir(t, base+"/open", 0o777)
	if d, err := MkdirTemp(open, "x-", 0o700); err == nil {
		d.Close()
		t.Errorf("MkdirTemp in a 0777 directory succeeded")
	}
}

func TestMkdirAll(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	d, err := MkdirAll(base+"/a/b/c", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	for _, p := range []string{"/a", "/a/b", "/a/b/c"} {
		if fi := fileInfo(t, base+p); fi.Mode() != fs.ModeDir|0o700 {
			t.Errorf("%s: %v", p, fi.Mode())
		}
	}
	// It makes nothing below a directory it refuses.
	mkdir(t, base+"/open", 0o777)
	if d, err := MkdirAll(base+"/open/x/y", 0o700); err == nil {
		d.Close()
		t.Error("MkdirAll below a 0777 directory succeeded")
	}
	if _, err := os.Lstat(base + "/open/x"); !os.IsNotExist(err) {
		t.Errorf("MkdirAll made a directory in a directory it refused: %v", err)
	}
}

// Not parallel: it sets the process's umask.
func TestBindUnix(t *testing.T) {
	base := t.TempDir()
	d, err := Open(base, OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// A umask that would take the owner's write bit: the mode is still
	// what was asked for.
	old := syscall.Umask(0o277)
	fd, id, err := d.BindUnix("s", unix.SOCK_DGRAM, 0o600)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fi, err := os.Lstat(base + "/s")
	if err != nil || fi.Mode() != fs.ModeSocket|0o600 {
		t.Fatalf("socket file %v %v, want mode 0600", fi.Mode(), err)
	}
	if sa, err := unix.Getsockname(fd); err != nil || sa.(*unix.SockaddrUnix).Name != base+"/s" {
		t.Errorf("bound to %v %v, want %s", sa, err, base+"/s")
	}
	if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
		t.Error("socket is blocking")
	}

	// A symlink in the way is not followed: bind fails and the target
	// stays as it was.
	target := base + "/target"
	if err := os.WriteFile(target, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	symlink(t, target, base+"/l")
	if _, _, err := d.BindUnix("l", unix.SOCK_STREAM, 0o600); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("BindUnix over a symlink: %v, want EADDRINUSE", err)
	}
	if fi := fileInfo(t, target); !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("symlink target changed: %v", fi.Mode())
	}

	// RemoveIfSame removes only the file that was made.
	if ok, err := d.RemoveIfSame("l", id); ok || err != nil {
		t.Errorf("RemoveIfSame of another file: %v %v", ok, err)
	}
	if ok, err := d.RemoveIfSame("s", id); !ok || err != nil {
		t.Errorf("RemoveIfSame of the socket: %v %v", ok, err)
	}
	if ok, err := d.RemoveIfSame("s", id); ok || err != nil {
		t.Errorf("RemoveIfSame of a name that is gone: %v %v", ok, err)
	}
	if _, err := os.Lstat(base + "/l"); err != nil {
		t.Errorf("symlink removed: %v", err)
	}

	long := strings.Repeat("x", 110)
	if _, _, err := d.BindUnix(long, unix.SOCK_STREAM, 0); err == nil || !strings.Contains(err.Error(), "longer than a unix socket path may be") {
		t.Errorf("BindUnix of a long path: %v", err)
	}
}

// The defect this package exists for: a name swapped for a symlink to a
// root file after the socket was bound. Chown and Chmod reach the socket
// that was made or nothing, never the symlink's target.
func TestChownDoesNotFollowASwappedName(t *testing.T) {
	t.Parallel()
	uid, gid := nobody(t)
	base := t.TempDir()
	d, err := Open(base, OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fd, id, err := d.BindUnix("s", unix.SOCK_DGRAM, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := d.Chown("s", id, uid, gid); err != nil {
		t.Fatal(err)
	}
	if st := fileInfo(t, base+"/s").Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("socket owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	secret := base + "/secret"
	if err := os.WriteFile(secret, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(base + "/s"); err != nil {
		t.Fatal(err)
	}
	symlink(t, secret, base+"/s")
	if err := d.Chown("s", id, uid, gid); err == nil {
		t.Error("Chown through a swapped name succeeded")
	}
	if err := d.Chmod("s", id, 0o666); err == nil {
		t.Error("Chmod through a swapped name succeeded")
	}
	if fi := fileInfo(t, secret); fi.Sys().(*syscall.Stat_t).Uid != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("the root file became %v of uid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
	}
}

// Not parallel: it sets the process's umask.
func TestOpenFile(t *testing.T) {
	base := t.TempDir()
	old := syscall.Umask(0o077)
	f, e, err := OpenFile(base+"/log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("one\n")
	f.Close()
	if e.Mode != 0o640 || fileInfo(t, base+"/log").Mode() != 0o640 {
		t.Errorf("new file has mode %v, want 0640 whatever the umask", e.Mode)
	}
	// An existing file keeps its mode and content.
	os.Chmod(base+"/log", 0o600)
	f, _, err = OpenFile(base+"/log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("two\n")
	f.Close()
	if b, _ := os.ReadFile(base + "/log"); string(b) != "one\ntwo\n" || fileInfo(t, base+"/log").Mode() != 0o600 {
		t.Errorf("appended file: %q %v", b, fileInfo(t, base+"/log").Mode())
	}

	target := base + "/target"
	os.WriteFile(target, []byte("keep"), 0o600)
	symlink(t, target, base+"/link")
	if unix.Mkfifo(base+"/fifo", 0o600) != nil {
		t.Fatal("mkfifo")
	}
	for name, want := range map[string]string{
		"link": "a symlink of uid " + strconv.Itoa(os.Geteuid()),
		"fifo": "a named pipe of uid " + strconv.Itoa(os.Geteuid()),
	} {
		_, _, err := OpenFile(base+"/"+name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		var ue *UnsafeError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "is in the way, not a regular file") {
			t.Errorf("OpenFile over a %s: %v, want an *UnsafeError saying %q", name, err, want)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("symlink target now holds %q", b)
	}

	open := mkdir(t, base+"/open", 0o777)
	if _, _, err := OpenFile(open+"/f", os.O_WRONLY|os.O_CREATE, 0o600); err == nil || !strings.Contains(err.Error(), "without the sticky bit") {
		t.Errorf("OpenFile in a 0777 directory: %v", err)
	}
}

// A file of another user is refused, and O_TRUNC leaves it whole.
func TestOpenFileRefusesAnotherUsersFile(t *testing.T) {
	t.Parallel()
	uid, gid := nobody(t)
	base := t.TempDir()
	path := base + "/f"
	os.WriteFile(path, []byte("theirs"), 0o666)
	chown(t, path, uid, gid)
	_, _, err := OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534 (nobody)") {
		t.Errorf("OpenFile of nobody's file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "theirs" {
		t.Errorf("the refused file now holds %q", b)
	}
}

func TestReadTrusted(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	write := func(path string, mode os.FileMode) string {
		t.Helper()
		if err := os.WriteFile(path, []byte("listen = [\":80\"]"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write(base+"/real.toml", 0o644)
	symlink(t, "real.toml", base+"/link.toml")
	mkdir(t, base+"/open", 0o777)
	write(base+"/open/planted.toml", 0o644)
	symlink(t, base+"/open/planted.toml", base+"/to-open.toml")
	write(base+"/writable.toml", 0o666)
	for _, tc := range []struct{ name, want string }{
		{"real.toml", ""},
		{"link.toml", ""},
		{"to-open.toml", "without the sticky bit"},
		{"open/planted.toml", "without the sticky bit"},
		{"writable.toml", "mode -rw-rw-rw- lets others change it"},
	} {
		b, _, err := ReadTrusted(base+"/"+tc.name, 1<<10)
		switch {
		case tc.want == "" && (err != nil || string(b) != `listen = [":80"]`):
			t.Errorf("ReadTrusted(%s) = %q, %v", tc.name, b, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ReadTrusted(%s): %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := ReadTrusted(base+"/real.toml", 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("ReadTrusted beyond its limit: %v", err)
	}
}

func TestReadTrustedRefusesAnotherUsersSymlink(t *testing.T) {
	t.Parallel()
	uid, gid := nobody(t)
	base := t.TempDir()
	os.WriteFile(base+"/real.toml", nil, 0o644)
	l := symlink(t, base+"/real.toml", base+"/theirs.toml")
	chown(t, l, uid, gid)
	if _, _, err := ReadTrusted(l, 1<<10); err == nil || !strings.Contains(err.Error(), "a symlink of uid 65534 (nobody) is in the way") {
		t.Errorf("ReadTrusted through nobody's symlink: %v", err)
	}
}

func TestMkdirIsExclusiveAndRemovable(t *testing.T) {
	t.Parallel()
	top := mkdir(t, filepath.Join(t.TempDir(), "top"), 0o755)
	d, err := Open(top, OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sub, id, err := d.Mkdir("leaf", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if fi, err := os.Stat(filepath.Join(top, "leaf")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("leaf: %v, mode %v; want 0750 whatever the umask", err, fi.Mode().Perm())
	}
	if _, _, err := d.Mkdir("leaf", 0o750); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Mkdir: %v, want an error for fs.ErrExist", err)
	}
	// A symlink planted under the name is in the way, not followed.
	symlink(t, top, filepath.Join(top, "planted"))
	if _, _, err := d.Mkdir("planted", 0o755); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Mkdir over a symlink: %v, want an error for fs.ErrExist", err)
	}
	// The directory made is readable through OpenRead: a descriptor that
	// is not O_PATH (getdents works on it).
	if err := os.WriteFile(filepath.Join(top, "leaf", "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := sub.OpenRead()
	if err != nil {
		t.Fatal(err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil || len(names) != 1 || names[0] != "f" {
		t.Fatalf("read leaf through OpenRead: %v, %v", names, err)
	}
	os.Remove(filepath.Join(top, "leaf", "f"))
	if ok, err := d.RemoveIfSame("leaf", id); !ok || err != nil {
		t.Fatalf("RemoveIfSame(leaf) = %v, %v", ok, err)
	}
}
