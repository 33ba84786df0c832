//go:build !linux

package intercept

import (
	"errors"
	"os"
)

var errNotSupported = errors.New("bind interception: only on Linux")

// Available reports that there is no bind interception here.
func Available() error { return errNotSupported }

// Pair fails: there is no bind interception here.
func Pair() (ours, theirs *os.File, err error) { return nil, nil, errNotSupported }

// Install fails: there is no bind interception here.
func Install(sock int) error { return errNotSupported }

// Callbacks: see the Linux version.
type Callbacks struct {
	Installed func(noNewPrivs bool)
	Failed    func(err error)
	Bound     func(i int, asked string)
	Listened  func(i int)
	InUse     func(asked string)
}

// Supervisor: see the Linux version.
type Supervisor struct{}

// NewSupervisor fails: there is no bind interception here.
func NewSupervisor(conn *os.File, names []string, sockets []*os.File, cb Callbacks) (*Supervisor, error) {
	return nil, errNotSupported
}

func (s *Supervisor) Run()   {}
func (s *Supervisor) Close() {}
