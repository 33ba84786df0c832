package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/internal/safedir"
	"golang.org/x/sys/unix"
)

// DefaultDir is where the control sockets of the user's instances live:
// $XDG_RUNTIME_DIR/hotcluster, /run/hotcluster for root, else a directory
// of the user's own under the system's temporary directory.
func DefaultDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "hotcluster")
	}
	if os.Geteuid() == 0 {
		return "/run/hotcluster"
	}
	return filepath.Join(os.TempDir(), "hotcluster-"+strconv.Itoa(os.Geteuid()))
}

// nameChars are the bytes an instance name may hold.
const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

// CheckName accepts names usable as a file name: letters, digits, '.',
// '_' and '-', not starting with '.', at most 64 bytes.
func CheckName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' || strings.Trim(name, nameChars) != "" {
		return fmt.Errorf("instance name %q: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'", name)
	}
	return nil
}

// NameFrom makes a name that CheckName accepts out of s (a program's
// name): other bytes become '_'; "hotcluster" if nothing is left.
func NameFrom(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !strings.ContainsRune(nameChars, rune(c)) {
			b[i] = '_'
		}
	}
	s = strings.TrimLeft(string(b), ".")
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		return "hotcluster"
	}
	return s
}

// SocketPath is the control socket of instance name in dir.
func SocketPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// PrepareDir makes dir (mode 0700) if needed and checks that it is private
// to this user, and that no other user can change a directory or symlink
// on the way to it (see package internal/safedir): a socket in a directory
// others can write could be swapped. A refusal is a
// *safedir.UnsafeError.
func PrepareDir(dir string) error {
	d, err := prepareDir(dir)
	if err != nil {
		return err
	}
	return d.Close()
}

func prepareDir(dir string) (*safedir.Dir, error) {
	d, err := safedir.MkdirAll(dir, 0o700)
	if err != nil {
		return nil, fmt.Errorf("control directory: %w", err)
	}
	st := d.Stat()
	var why string
	switch {
	case !st.Ours():
		why = fmt.Sprintf("belongs to uid %d, not to this user (uid %d); remove it or pick another with --control", st.UID, os.Geteuid())
	case st.Mode.Perm()&0o077 != 0:
		why = fmt.Sprintf("has mode %s: others may reach its sockets; chmod 700 it or pick another with --control", st.Mode.Perm())
	default:
		return d, nil
	}
	d.Close()
	return nil, fmt.Errorf("control directory: %w", &safedir.UnsafeError{Path: d.Path(), Reason: why})
}

// ErrInUse is returned by Listen when a live master already serves path.
var ErrInUse = errors.New("control: socket in use")

// Listen binds the control socket at path, mode 0600 from the start, in a
// directory checked by PrepareDir. A socket file of this user's left by a
// master that died is replaced; one a live master answers on is ErrInUse;
// anything else in the way (a file, a symlink, another user's socket) is
// left alone and refused with a *safedir.UnsafeError. The socket file
// stays when the listener closes: the caller removes it with
// [SocketFile.Remove] (not after an upgrade, whose new master serves it).
func Listen(path string) (*net.UnixListener, error) {
	// sockaddr_un holds 108 bytes, the terminating NUL included.
	if len(path) > 107 {
		return nil, fmt.Errorf("control socket %s: %d bytes, longer than a unix socket path may be (107); give a shorter --control", path, len(path))
	}
	d, err := prepareDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	name := filepath.Base(path)
	if err := removeStale(d, name); err != nil {
		return nil, err
	}
	fd, id, err := d.BindUnix(name, unix.SOCK_STREAM, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The kernel caps the backlog at net.core.somaxconn, which is what Go's
	// net.Listen asks for.
	err = unix.Listen(fd, math.MaxInt32)
	var ln net.Listener
	if err == nil {
		f := os.NewFile(uintptr(fd), path)
		ln, err = net.FileListener(f) // a duplicate, in the netpoller
		f.Close()
	} else {
		unix.Close(fd)
	}
	if err != nil {
		d.RemoveIfSame(name, id)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

// removeStale removes the socket at name in d if it is this user's and no
// master answers on it any more.
func removeStale(d *safedir.Dir, name string) error {
	path := d.Join(name)
	e, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if e.Mode.Type() != fs.ModeSocket {
		return fmt.Errorf("control socket: %w", &safedir.UnsafeError{Path: path, Reason: e.String() + " is in the way, not a socket; remove it or pick another --control"})
	}
	if !e.Ours() {
		return fmt.Errorf("control socket: %w", &safedir.UnsafeError{Path: path, Reason: fmt.Sprintf("%s is in the way; only a stale socket of this user's (uid %d) is replaced: remove it or pick another --control", e, os.Geteuid())})
	}
	// Ours, in a directory only this user and root can change: the dial
	// reaches that socket.
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: a running master serves %s; stop it or pick another --name", ErrInUse, path)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	// Stale: its master is gone.
	if _, err := d.RemoveIfSame(name, e.ID); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// SocketFile is the control socket file a master serves, for removing that
// file and no other when the master stops: a master of the same name that
// started meanwhile may have replaced a file it thought stale.
type SocketFile struct {
	dir, name string
	id        safedir.FileID
}

// IdentifySocket returns the socket file at path, which this master just
// bound, or which (after an upgrade) the previous master still serves.
func IdentifySocket(path string) (*SocketFile, error) {
	d, err := safedir.Open(filepath.Dir(path), safedir.OwnerOnly)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer d.Close()
	name := filepath.Base(path)
	e, err := d.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if e.Mode.Type() != fs.ModeSocket || !e.Ours() {
		return nil, fmt.Errorf("control socket: %w", &safedir.UnsafeError{Path: d.Join(name), Reason: e.String() + " is where this master's socket should be"})
	}
	return &SocketFile{dir: d.Path(), name: name, id: e.ID}, nil
}

// Remove removes the socket file if it still is the one identified.
func (f *SocketFile) Remove() error {
	d, err := safedir.Open(f.dir, safedir.OwnerOnly)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer d.Close()
	if _, err := d.RemoveIfSame(f.name, f.id); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// Instances lists the names of the control sockets in dir.
func Instances(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".sock"); ok && e.Type() == os.ModeSocket {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Dirs are the directories a client looks in for instances: DefaultDir,
// and for root also every user's (XDG_RUNTIME_DIR under /run/user, and the
// temporary directory's hotcluster-UID), since root may control them all,
// for example a service that runs as www-data.
func Dirs() []string {
	dirs := []string{DefaultDir()}
	if os.Geteuid() != 0 {
		return dirs
	}
	seen := map[string]bool{dirs[0]: true}
	for _, pattern := range []string{"/run/user/*/hotcluster", filepath.Join(os.TempDir(), "hotcluster-*"), "/run/hotcluster"} {
		matches, _ := filepath.Glob(pattern)
		for _, d := range matches {
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// Instance is a control socket a master answers on.
type Instance struct {
	Name, Socket string
}

// Running lists the instances whose masters answer, in dirs, in order.
func Running(ctx context.Context, dirs []string) []Instance {
	var out []Instance
	for _, d := range dirs {
		names, err := Instances(d)
		if err != nil {
			continue
		}
		for _, n := range names {
			if p := SocketPath(d, n); Alive(ctx, p) {
				out = append(out, Instance{Name: n, Socket: p})
			}
		}
	}
	return out
}
