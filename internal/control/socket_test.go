package control

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/safedir"
)

// Not parallel: it clears the process's umask, which would make the
// socket 0777 if its mode were set only after bind.
func TestListenSocketModeFromTheStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl", "a.sock")
	old := syscall.Umask(0)
	ln, err := Listen(path)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode() != fs.ModeSocket|0o600 {
		t.Errorf("control socket: %v %v, want mode 0600", fi.Mode(), err)
	}
	if fi, err := os.Lstat(filepath.Dir(path)); err != nil || fi.Mode() != fs.ModeDir|0o700 {
		t.Errorf("control directory: %v %v, want mode 0700", fi.Mode(), err)
	}
}

// What is in the way of the control socket is left as it was.
func TestListenLeavesWhatIsInTheWay(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ctl")
	if err := PrepareDir(dir); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(link)
	var ue *safedir.UnsafeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "a symlink of uid "+strconv.Itoa(os.Geteuid())) || !strings.Contains(err.Error(), "is in the way, not a socket") {
		t.Errorf("Listen over a symlink: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("the symlink is gone: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("symlink target holds %q", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Errorf("symlink target has mode %v", fi.Mode())
	}
}

func TestListenLeavesAnotherUsersSocket(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to plant files as another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	path := filepath.Join(t.TempDir(), "ctl", "a.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // stale
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "a socket of uid 65534 (nobody) is in the way; only a stale socket of this user's (uid 0) is replaced") {
		t.Errorf("Listen over nobody's stale socket: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Errorf("nobody's socket is gone: %v", err)
	}
}

// The control directory is checked all the way up, and nothing is made
// below a directory that is refused.
func TestPrepareDirChecksTheWayThere(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	err := PrepareDir(filepath.Join(open, "ctl"))
	var ue *safedir.UnsafeError
	if !errors.As(err, &ue) || ue.Path != open || !strings.Contains(err.Error(), "without the sticky bit") {
		t.Errorf("PrepareDir below a 0777 directory: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(open, "ctl")); !os.IsNotExist(err) {
		t.Errorf("made a directory below a refused one: %v", err)
	}
	// A symlink the user owns, in a directory only it writes, is fine.
	real := filepath.Join(base, "real")
	os.Mkdir(real, 0o700)
	os.Symlink(real, filepath.Join(base, "link"))
	if err := PrepareDir(filepath.Join(base, "link")); err != nil {
		t.Errorf("PrepareDir through the user's own symlink: %v", err)
	}
}

func TestSocketFileRemovesOnlyItsFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ctl", "a.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := IdentifySocket(path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	// A master of the same name took the stale file over meanwhile; ours
	// is kept elsewhere, so that its inode number is not reused.
	os.Rename(path, path+".old")
	ln2, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("the other master's socket was removed: %v", err)
	} else {
		c.Close()
	}
	f2, err := IdentifySocket(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after Remove: %v", err)
	}
}
