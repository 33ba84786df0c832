//go:build !linux

package handoff

import (
	"context"
	"errors"
	"os"
	"syscall"
)

var errNotSupported = errors.New("handoff: only Linux is supported")

func openListener(spec Spec, cfg *Config) (*listener, error)         { return nil, errNotSupported }
func (l *listener) grow() error                                      { return errNotSupported }
func (l *listener) steer(k int, slots []int) error                   { return errNotSupported }
func (l *listener) sockAt(k, slot int) (*sock, error)                { return nil, errNotSupported }
func (l *listener) slotsOf(k int) int                                { return 1 }
func (l *listener) perSlot() bool                                    { return false }
func (l *listener) quiesce(ctx context.Context, socks []*sock) error { return errNotSupported }
func dupFile(rc syscall.RawConn, name string) (*os.File, error)      { return nil, errNotSupported }

type unixFile struct{}

func (l *listener) removeFile() {}

type inherited struct {
	spec Spec
	used bool
}

func describeInherited(files []*os.File) ([]*inherited, error) {
	if len(files) > 0 {
		return nil, errNotSupported
	}
	return nil, nil
}
func matchInherited(in []*inherited, spec Spec) *inherited { return nil }
func adoptListener(spec Spec, in *inherited, cfg *Config) (*listener, error) {
	return nil, errNotSupported
}

func getReusePort(fd int) (int, error)             { return 0, errNotSupported }
func socketSpec(fd int, name string) (Spec, error) { return Spec{}, errNotSupported }
func sockOf(sc syscall.Conn, c interface{ Close() error }) (*sock, error) {
	return nil, errNotSupported
}

type rawFD int

func (fd rawFD) Close() error { return errNotSupported }

func sockInode(rc syscall.RawConn) uint64            { return 0 }
func (s *Sockets) inheritSelector(l *listener) error { return errNotSupported }
func (s *Sockets) resetIdleLocked()                  {}
func findOwners(fs []*Foreign)                       {}
func listForeign(spec Spec, network, addr string, ours []*sock) ([]*Foreign, error) {
	return nil, errNotSupported
}

func (l *listener) slotSock(k, slot int) *sock    { return nil }
func (l *listener) steerRefs(refs [][2]int) error { return errNotSupported }
