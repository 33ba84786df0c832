package workers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ResolveCommand finds the executable of a worker command the way a shell
// would, relative to dir when the name holds a slash, and checks that it
// can be executed, so that a typo is reported before anything is bound or
// started. It returns an absolute path.
func ResolveCommand(name, dir string) (string, error) {
	if name == "" {
		return "", errors.New("no worker command: give it after --, e.g. hotcluster run --listen :8080 -- ./server")
	}
	var path string
	if strings.Contains(name, "/") {
		path = name
		if !filepath.IsAbs(path) && dir != "" {
			path = filepath.Join(dir, path)
		}
	} else {
		p, err := exec.LookPath(name)
		if errors.Is(err, exec.ErrDot) {
			// Found through "." in PATH: run it, but by an explicit path.
			err = nil
		}
		if err != nil {
			return "", fmt.Errorf("worker command %q: not found in PATH; give a path such as ./%s", name, name)
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("worker command %q: %w", name, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("worker command %q: %s does not exist", name, abs)
	case err != nil:
		return "", fmt.Errorf("worker command %q: %w", name, err)
	case fi.IsDir():
		return "", fmt.Errorf("worker command %q: %s is a directory", name, abs)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("worker command %q: %s is not executable (mode %s); chmod +x it", name, abs, fi.Mode().Perm())
	}
	if err := syscall.Access(abs, 0x1 /* X_OK */); err != nil {
		return "", fmt.Errorf("worker command %q: %s: cannot execute as this user (mode %s): %w", name, abs, fi.Mode().Perm(), err)
	}
	return abs, nil
}
