package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

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
// to this user: a socket in a directory others can write could be swapped.
func PrepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return fmt.Errorf("control directory %s: not a directory", dir)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("control directory %s belongs to uid %d, not to this user (uid %d); remove it or pick another with --control", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("control directory %s has mode %s: others may reach its sockets; chmod 700 it or pick another with --control", dir, fi.Mode().Perm())
	}
	return nil
}

// ErrInUse is returned by Listen when a live master already serves path.
var ErrInUse = errors.New("control: socket in use")

// Listen binds the control socket at path, in a directory checked by
// PrepareDir. A socket file left by a master that died is replaced; one a
// live master answers on is ErrInUse. The socket file stays when the
// listener closes: the caller removes it (not after an upgrade, whose new
// master serves it).
func Listen(path string) (*net.UnixListener, error) {
	// sockaddr_un holds 108 bytes, the terminating NUL included.
	if len(path) > 107 {
		return nil, fmt.Errorf("control socket %s: %d bytes, longer than a unix socket path may be (107); give a shorter --control", path, len(path))
	}
	if err := PrepareDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: a running master serves %s; stop it or pick another --name", ErrInUse, path)
		}
		if !errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("control socket %s: %w", path, err)
		}
		// Stale: its master is gone.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	// The directory is 0700 already; the mode is the second lock.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
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
