package logfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/safedir"
)

// writeMiB writes n MiB to f in lines of 1 KiB.
func writeMiB(t *testing.T, f *File, n int) {
	t.Helper()
	line := append(bytes.Repeat([]byte("l"), 1023), '\n')
	for i := 0; i < n*1024; i++ {
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
	}
}

// rotated lists the rotated files beside name.
func rotated(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "app-*.log*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// At 1 MiB the file is rotated; at most MaxFiles rotated files are kept,
// and the current file never passes the size.
func TestRotatesAtSizeKeepingCount(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	f, err := Open(path, Config{MaxSize: 1 << 20, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != Mode {
		t.Fatalf("Open made %v (%v), want a file of mode %o", fi, err, Mode)
	}
	for i := 0; i < 5; i++ {
		writeMiB(t, f, 1)
		// lumberjack removes old files in its own goroutine, after each
		// rotation: wait for it, bounded.
		deadline := time.Now().Add(10 * time.Second)
		for len(rotated(t, dir)) > 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if n := len(rotated(t, dir)); n != 2 {
		t.Errorf("%d rotated files kept (%v), want 2", n, rotated(t, dir))
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > 1<<20 {
		t.Errorf("current file: %v, %v; want at most 1 MiB", fi, err)
	}
	for _, r := range rotated(t, dir) {
		if fi, err := os.Stat(r); err != nil || fi.Mode().Perm() != Mode || fi.Size() > 1<<20 {
			t.Errorf("rotated file %s: %v, %v; want mode %o, at most 1 MiB", r, fi, err, Mode)
		}
	}
}

// After logrotate moved the file away, Reopen makes the next line go to a
// new file of the same name, with Mode, and the moved file is let go.
func TestReopenAfterMove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	f, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("before\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("still the old file\n"))
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("after\n"))
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "before\nstill the old file\n" || string(cur) != "after\n" {
		t.Errorf("moved file %q, new file %q", old, cur)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != Mode {
		t.Errorf("new file %v, %v; want mode %o", fi, err, Mode)
	}
}

// A directory others can write (as Ubuntu's /var/log for the syslog
// group), a symlink or a named pipe at the name are refused, with what to
// do; nothing is created.
func TestRefusesUnsafePaths(t *testing.T) {
	top := t.TempDir()
	shared := filepath.Join(top, "shared")
	os.Mkdir(shared, 0o775)
	os.Chmod(shared, 0o775)
	link := filepath.Join(top, "link.log")
	os.Symlink(filepath.Join(top, "target"), link)
	fifo := filepath.Join(top, "fifo.log")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(shared, "app.log"): "writable by others",
		link:                             "not a regular file",
		fifo:                             "not a regular file",
	} {
		_, err := Open(path, Config{})
		var ue *safedir.UnsafeError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%s) = %v; want an UnsafeError saying %q", path, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(shared, "app.log")); err == nil {
		t.Error("a file was made in the shared directory")
	}
	if _, err := os.Lstat(filepath.Join(top, "target")); err == nil {
		t.Error("the symlink was followed")
	}
	if _, err := Open(filepath.Join(top, "small.log"), Config{MaxSize: 512 << 10}); err == nil || !strings.Contains(err.Error(), "1M") {
		t.Errorf("a rotation size of 512K: %v; want an error naming 1M", err)
	}
}
