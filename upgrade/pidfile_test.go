package upgrade

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRemovePIDFileOnlyIfOurs(t *testing.T) {
	t.Parallel()
	const pid = 4242
	for _, tc := range []struct {
		name string
		// setup makes what is at path; keep names what must stay.
		setup  func(t *testing.T, dir, path string)
		remove bool
		// refused: not a regular file, which Remove reports.
		refused bool
	}{
		{"holds our pid", func(t *testing.T, dir, path string) {
			os.WriteFile(path, []byte(strconv.Itoa(pid)), 0o600)
		}, true, false},
		{"holds our pid and a newline", func(t *testing.T, dir, path string) {
			os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644)
		}, true, false},
		{"rewritten to another pid", func(t *testing.T, dir, path string) {
			os.WriteFile(path, []byte("4243"), 0o600)
		}, false, false},
		{"a symlink to a file that holds our pid", func(t *testing.T, dir, path string) {
			target := filepath.Join(dir, "target")
			os.WriteFile(target, []byte(strconv.Itoa(pid)), 0o600)
			os.Symlink(target, path)
		}, false, true},
		{"a named pipe", func(t *testing.T, dir, path string) {
			unix.Mkfifo(path, 0o600)
		}, false, true},
		{"gone", func(t *testing.T, dir, path string) {}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "master.pid")
			tc.setup(t, dir, path)
			before, _ := os.Lstat(path)
			if err := removePIDFile(path, pid); (err != nil) != tc.refused {
				t.Fatalf("removePIDFile: %v", err)
			}
			after, err := os.Lstat(path)
			switch {
			case tc.remove && err == nil:
				t.Error("the pid file is still there")
			case !tc.remove && before != nil && (err != nil || !os.SameFile(before, after)):
				t.Errorf("%s was removed or replaced: %v", tc.name, err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "target")); err == nil && string(b) != strconv.Itoa(pid) {
				t.Errorf("symlink target holds %q", b)
			}
		})
	}
}

func TestNewRefusesAPIDFileOthersCanChange(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "open")
	os.Mkdir(dir, 0o700)
	os.Chmod(dir, 0o777)
	// Refused before tableflip is set up: this process may still make its
	// one Upgrader.
	if _, err := New(Config{PIDFile: filepath.Join(dir, "master.pid")}); err == nil {
		t.Fatal("New with a pid file in a 0777 directory succeeded")
	} else if want := "pid file " + dir + "/master.pid: " + dir + ": directory is writable by others (mode 0777) without the sticky bit"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("New: %v, want %q", err, want)
	}
}
