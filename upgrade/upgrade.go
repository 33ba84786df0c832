// Package upgrade owns hotcluster's single tableflip.Upgrader: the place where
// the master keeps every listening socket for its whole life, so that a later
// master started by an upgrade of hotcluster's own binary inherits them.
//
// Invariant: every socket the master hands to workers was registered here
// first, by name, so that it crosses an upgrade; nothing else in hotcluster
// imports tableflip.
//
// Sockets are stored as named files ([Upgrader.AddFile]) rather than through
// tableflip's (network, address) keys, because one listen address owns a group
// of SO_REUSEPORT sockets (see package handoff) that need names of their own.
// tableflip duplicates them through SyscallConn, which keeps O_NONBLOCK intact
// on the open file description that the master and every worker share.
package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/hotcluster/hotcluster/internal/safedir"
)

// ErrNotSupported is returned on platforms where tableflip cannot work.
var ErrNotSupported = errors.New("upgrade: platform does not support graceful upgrades")

// Config controls the Upgrader. A zero Config is valid.
type Config struct {
	// PIDFile, when set, names a file that always holds the PID of the live
	// master: written when the master becomes ready (by tableflip, through
	// a temporary file in the same directory and a rename, so never through
	// a symlink at the name), removed by RemovePIDFile. Its directory must
	// be one that no user but root and this one can change: New refuses
	// another with a *safedir.UnsafeError.
	PIDFile string
	// UpgradeTimeout bounds how long a new master may take to be ready;
	// default tableflip.DefaultUpgradeTimeout (1 minute).
	UpgradeTimeout time.Duration
}

// Upgrader stores the master's sockets. It is safe for concurrent use.
type Upgrader struct {
	tf      *tableflip.Upgrader
	pidfile string // absolute
}

// New creates the process's only Upgrader; a second call fails.
func New(cfg Config) (*Upgrader, error) {
	if cfg.PIDFile != "" {
		abs, err := filepath.Abs(cfg.PIDFile)
		if err != nil {
			return nil, fmt.Errorf("pid file %s: %w", cfg.PIDFile, err)
		}
		d, err := safedir.Open(filepath.Dir(abs), safedir.OwnerOnly)
		if err != nil {
			return nil, fmt.Errorf("pid file %s: %w", cfg.PIDFile, err)
		}
		d.Close()
		cfg.PIDFile = abs
	}
	tf, err := tableflip.New(tableflip.Options{PIDFile: cfg.PIDFile, UpgradeTimeout: cfg.UpgradeTimeout})
	if errors.Is(err, tableflip.ErrNotSupported) {
		return nil, ErrNotSupported
	}
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	return &Upgrader{tf: tf, pidfile: cfg.PIDFile}, nil
}

// RemovePIDFile removes Config.PIDFile if it still holds this process's
// PID: for a master that stops for good, not for one that handed over to
// an upgraded master (whose PID the file holds by then). A file that
// someone rewrote, or replaced with anything but a regular file, is left
// alone.
func (u *Upgrader) RemovePIDFile() error {
	if u.pidfile == "" {
		return nil
	}
	return removePIDFile(u.pidfile, os.Getpid())
}

// removePIDFile removes the pid file at path if it holds pid. It reads
// the file without following a symlink and unlinks it only if the name
// still is that file, in a directory that only root and this user can
// change (see package internal/safedir for the race that remains).
func removePIDFile(path string, pid int) error {
	d, err := safedir.Open(filepath.Dir(path), safedir.OwnerOnly)
	if err != nil {
		return fmt.Errorf("remove pid file: %w", err)
	}
	defer d.Close()
	name := filepath.Base(path)
	f, e, err := d.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove pid file: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 32))
	f.Close()
	if err != nil {
		return fmt.Errorf("remove pid file: %w", err)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		return nil
	}
	if _, err := d.RemoveIfSame(name, e.ID); err != nil {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

// File returns a close-on-exec duplicate of the socket stored under name by
// a previous master, or nil when there is none. The caller owns the result.
func (u *Upgrader) File(name string) (*os.File, error) {
	f, err := u.tf.Fds.File(name)
	if err != nil {
		return nil, fmt.Errorf("upgrade: inherit %s: %w", name, err)
	}
	return f, nil
}

// AddFile stores a duplicate of f under name; the caller keeps f and may
// close it. f must implement syscall.Conn semantics of *os.File: it is
// duplicated through SyscallConn, never through Fd.
func (u *Upgrader) AddFile(name string, f *os.File) error {
	if err := u.tf.Fds.AddFile(name, f); err != nil {
		return fmt.Errorf("upgrade: store %s: %w", name, err)
	}
	return nil
}

// HasParent reports whether this master was started by an upgrade.
func (u *Upgrader) HasParent() bool { return u.tf.HasParent() }

// Ready tells a parent master, if any, that this one has taken over, and
// writes the PID file. Inherited sockets nobody asked for are closed.
func (u *Upgrader) Ready() error {
	if err := u.tf.Ready(); err != nil {
		return fmt.Errorf("upgrade: ready: %w", err)
	}
	return nil
}

// Stop closes every stored socket and prevents further upgrades. Safe to call
// more than once.
func (u *Upgrader) Stop() { u.tf.Stop() }

// Upgrade starts the current binary again (os.Args) with the stored
// sockets, and returns once the new process called Ready, or with why it
// did not: it exited, or was not ready within the timeout. It refuses
// while a previous master of this one has not exited yet.
func (u *Upgrader) Upgrade() error {
	if err := u.tf.Upgrade(); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	return nil
}

// WaitForParent blocks until the master that started this one by an
// upgrade has exited, or ctx ends.
func (u *Upgrader) WaitForParent(ctx context.Context) error {
	return u.tf.WaitForParent(ctx)
}

// InheritOrListen returns the listener a previous master passed under name,
// or the one listen makes, and stores it for the next upgrade: the control
// socket and the metrics port cross upgrades without a moment in which
// nothing listens.
func InheritOrListen(u *Upgrader, name string, listen func() (net.Listener, error)) (net.Listener, error) {
	f, err := u.File(name)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if f != nil {
		ln, err = net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s from the previous master: %w", name, err)
		}
	} else if ln, err = listen(); err != nil {
		return nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	sc, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("%s: cannot be passed on", name)
	}
	lf, err := sc.File()
	if err == nil {
		err = u.AddFile(name, lf)
		lf.Close()
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
