//go:build !linux

package safedir

import (
	"errors"
	"io/fs"
	"os"
)

// ErrNotSupported: the checks rest on Linux's O_PATH and *at calls.
var ErrNotSupported = errors.New("safedir: only Linux is supported")

// Dir is an open directory that passed Open's checks (Linux only).
type Dir struct{ path string }

func (d *Dir) Path() string                { return d.path }
func (d *Dir) Join(name string) string     { return d.path + "/" + name }
func (d *Dir) Stat() Entry                 { return Entry{} }
func (d *Dir) Close() error                { return nil }
func (d *Dir) Lstat(string) (Entry, error) { return Entry{}, ErrNotSupported }
func (d *Dir) RemoveIfSame(string, FileID) (bool, error) {
	return false, ErrNotSupported
}
func (d *Dir) BindUnix(string, int, fs.FileMode) (int, FileID, error) {
	return -1, FileID{}, ErrNotSupported
}
func (d *Dir) Chown(string, FileID, int, int) error    { return ErrNotSupported }
func (d *Dir) Chmod(string, FileID, fs.FileMode) error { return ErrNotSupported }
func (d *Dir) OpenFile(string, int, fs.FileMode) (*os.File, Entry, error) {
	return nil, Entry{}, ErrNotSupported
}

func (d *Dir) Mkdir(string, fs.FileMode) (*Dir, FileID, error) {
	return nil, FileID{}, ErrNotSupported
}
func (d *Dir) OpenRead() (*os.File, error) { return nil, ErrNotSupported }

func Open(string, Policy) (*Dir, error)                   { return nil, ErrNotSupported }
func MkdirAll(string, fs.FileMode) (*Dir, error)          { return nil, ErrNotSupported }
func MkdirTemp(string, string, fs.FileMode) (*Dir, error) { return nil, ErrNotSupported }
func OpenFile(string, int, fs.FileMode) (*os.File, Entry, error) {
	return nil, Entry{}, ErrNotSupported
}
func ReadTrusted(string, int64) ([]byte, Entry, error) { return nil, Entry{}, ErrNotSupported }
