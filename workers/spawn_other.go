//go:build !linux

package workers

import (
	"errors"
)

// errNotSupported: the worker contract (LISTEN_PID shim, Pdeathsig from a
// locked thread, waitid) is built on Linux.
var errNotSupported = errors.New("workers: only Linux is supported")

func (p *Pool) spawn(s spawnSpec) (*worker, error) {
	closeFiles(s.files)
	return nil, errNotSupported
}

func armParentDeath() error { return nil }

func heldSockets(pid int, inodes []uint64) ([]bool, bool) { return make([]bool, len(inodes)), false }

func exited(pid int) bool { return false }

func (p *Pool) reserveDescriptors(int) error { return nil }
