// Package logfile writes a log file that rotates by size and reopens on
// request (SIGUSR1, for logrotate), so that a log never fills the disk. It
// is the only importer of gopkg.in/natefinch/lumberjack.v2, which does the
// rotation: the current file is renamed NAME-TIMESTAMP.EXT once it would
// pass MaxSize, a new one is created with the old one's mode and owner,
// and a goroutine of lumberjack's, one per file for the life of the
// process, compresses and removes old files beyond MaxFiles.
//
// Invariant: the master, often root, opens and rotates only files in a
// directory that nobody but root and its own user can change, all the way
// up (package internal/safedir): lumberjack works by name (stat, rename,
// create, chown, remove), and in such a directory no one else can plant a
// name or a symlink between two of those steps. A group-writable
// directory, such as Ubuntu's /var/log (root:syslog, 0775), is refused:
// any member of that group (the syslog daemon's user) could plant
// app.log -> /etc/shadow, which root would then append to, chown and
// rotate away. Use a directory of the service's own, /var/log/NAME
// (LogsDirectory=NAME under systemd makes it, root's, 0755).
//
// A File is written by one goroutine (the master's output queue); only
// Reopen is called from elsewhere, and it never waits for a write.
package logfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/hotcluster/hotcluster/internal/safedir"
	"gopkg.in/natefinch/lumberjack.v2"
)

// Defaults of Config.
const (
	DefaultMaxSize  = 100 << 20
	DefaultMaxFiles = 5
	// MinMaxSize is the smallest rotation size: lumberjack counts in MiB.
	MinMaxSize = 1 << 20
	// Mode is what a new log file gets: logs can hold what the workers
	// print, secrets included, so not for every user.
	Mode = 0o640
)

// Config says how a log file rotates. Zero fields take the defaults.
type Config struct {
	// MaxSize is the size in bytes at which the file is rotated, in whole
	// MiB (rounded up), at least MinMaxSize.
	MaxSize int64
	// MaxFiles is how many rotated files are kept beside the current one;
	// negative: all.
	MaxFiles int
	// Compress gzips the rotated files.
	Compress bool
}

// File is an open log file.
type File struct {
	path   string
	lj     *lumberjack.Logger
	reopen atomic.Bool
}

// Open checks the file at path (see the package comment), creates it if
// missing with Mode, and returns it for writing. The error is a
// *safedir.UnsafeError for a path another user could change.
func Open(path string, cfg Config) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("log file %s: %w", path, err)
	}
	if err := check(abs); err != nil {
		return nil, err
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.MaxSize < MinMaxSize {
		return nil, fmt.Errorf("log file %s: rotation size %d bytes: want %d (1M) or more", path, cfg.MaxSize, MinMaxSize)
	}
	switch {
	case cfg.MaxFiles == 0:
		cfg.MaxFiles = DefaultMaxFiles
	case cfg.MaxFiles < 0:
		cfg.MaxFiles = 0 // lumberjack: keep all
	}
	return &File{path: abs, lj: &lumberjack.Logger{
		Filename:   abs,
		MaxSize:    int((cfg.MaxSize + MinMaxSize - 1) / MinMaxSize),
		MaxBackups: cfg.MaxFiles,
		Compress:   cfg.Compress,
		LocalTime:  false,
	}}, nil
}

// check opens path as the package comment says, creating it with Mode if
// it does not exist, and closes it again: lumberjack opens it by name.
func check(path string) error {
	f, _, err := safedir.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, Mode)
	if err != nil {
		var ue *safedir.UnsafeError
		if errors.As(err, &ue) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("log file: %w", err)
		}
		return fmt.Errorf("log file %s: %w", path, err)
	}
	return f.Close()
}

// Path is the file's absolute path.
func (f *File) Path() string { return f.path }

// Write appends p, rotating first if the file would pass its size. It is
// called by one goroutine at a time.
func (f *File) Write(p []byte) (int, error) {
	if f.reopen.Swap(false) {
		// Closed now, opened by name at the write below: the file that
		// logrotate moved away is let go, and a new one takes its name.
		f.lj.Close()
	}
	return f.lj.Write(p)
}

// Reopen makes the next write open the file by its name again, as after
// logrotate moved it away (the nginx and gunicorn convention for
// SIGUSR1), once the name passed the checks again; a new file gets Mode.
// It does not wait for a write in progress.
func (f *File) Reopen() error {
	if err := check(f.path); err != nil {
		return err
	}
	f.reopen.Store(true)
	return nil
}

// Close closes the file. The File must not be written after.
func (f *File) Close() error { return f.lj.Close() }
