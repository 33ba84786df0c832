//go:build !linux

package child

import (
	"errors"
	"runtime"
)

// errNotSupported is returned for inherited sockets outside Linux; binding by
// hand (no LISTEN_FDS) and the notify protocol work everywhere.
var errNotSupported = errors.New("inherited sockets are not supported on " + runtime.GOOS)

func closeOnExec(int) error { return errNotSupported }

func closeFd(int) error { return errNotSupported }

func sockKind(int) (kind, error) { return kindOther, errNotSupported }
