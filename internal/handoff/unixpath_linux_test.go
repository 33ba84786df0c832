package handoff

import (
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/safedir"
	"golang.org/x/sys/unix"
)

func openUnix(t *testing.T, path string) (*Sockets, error) {
	t.Helper()
	spec, err := ParseSpec("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	return Open(Config{Specs: []Spec{spec}})
}

// staleSocket leaves a socket file at path that nobody listens on, as a
// master that was killed does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestUnixListenerReplacesOnlyItsOwnStaleSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.sock")
	staleSocket(t, path)
	s, err := openUnix(t, path)
	if err != nil {
		t.Fatalf("Open over a stale socket of our own: %v", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("the stale socket is still there: %v", err)
	} else {
		c.Close()
	}
	// Live: refused.
	if s2, err := openUnix(t, path); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		if s2 != nil {
			s2.Close(true)
		}
		t.Errorf("Open over a live socket: %v, want EADDRINUSE", err)
	}
	s.Close(true)
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after Close: %v", err)
	}

	// Names that are not a stale socket of ours are left alone.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	for name, plant := range map[string]func(string) error{
		"symlink": func(p string) error { return os.Symlink(target, p) },
		"file":    func(p string) error { return os.WriteFile(p, []byte("x"), 0o600) },
	} {
		p := filepath.Join(dir, name+".sock")
		if err := plant(p); err != nil {
			t.Fatal(err)
		}
		_, err := openUnix(t, p)
		var ue *safedir.UnsafeError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "is in the way; only a stale socket of this user's") || !strings.Contains(err.Error(), "unix://"+p) {
			t.Errorf("Open over a %s: %v", name, err)
		}
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("the %s in the way was removed: %v", name, err)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("symlink target holds %q", b)
	}
}

// At the final stop the file goes only if it still is the socket bound.
func TestUnixListenerRemovesOnlyTheSocketItBound(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app.sock")
	s, err := openUnix(t, path)
	if err != nil {
		t.Fatal(err)
	}
	// Another master's socket now has the name; ours is elsewhere (kept,
	// so that its inode number cannot be reused).
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	staleSocket(t, path)
	other := inode(t, path)
	s.Close(true)
	if _, err := os.Lstat(path); err != nil || inode(t, path) != other {
		t.Errorf("Close removed a socket it did not bind: %v", err)
	}
}

func TestUnixListenerDirectoryRules(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for _, tc := range []struct {
		mode uint32
		want string
	}{
		{0o755, ""},
		{0o1777, ""}, // as /tmp
		{0o777, "writable by others (mode 0777) without the sticky bit"},
		{0o775, "writable by others (mode 0775) without the sticky bit"},
	} {
		dir := filepath.Join(base, strconv.FormatUint(uint64(tc.mode), 8))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		s, err := openUnix(t, filepath.Join(dir, "app.sock"))
		if tc.want == "" {
			if err != nil {
				t.Errorf("directory %04o: %v", tc.mode, err)
				continue
			}
			s.Close(true)
			continue
		}
		var ue *safedir.UnsafeError
		if err == nil || !errors.As(err, &ue) || ue.Path != dir || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("directory %04o: %v, want %q", tc.mode, err, tc.want)
		}
		if s != nil {
			s.Close(true)
		}
	}
}

// A stale socket of another user's, in a directory it may write (sticky,
// as /tmp), is not removed: root would remove what is not its own.
func TestUnixListenerLeavesAnotherUsersSocket(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to plant files as another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	dir := filepath.Join(t.TempDir(), "tmp")
	os.Mkdir(dir, 0o700)
	unix.Chmod(dir, 0o1777)
	path := filepath.Join(dir, "app.sock")
	staleSocket(t, path)
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
	_, err = openUnix(t, path)
	if err == nil || !strings.Contains(err.Error(), "a socket of uid 65534 (nobody) is in the way") {
		t.Errorf("Open over nobody's stale socket: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Errorf("nobody's socket is gone or changed: %v", err)
	}
}
