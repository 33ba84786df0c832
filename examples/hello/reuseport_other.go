//go:build !unix

package main

import (
	"errors"
	"net"
)

func listenReusePort(string) (net.Listener, error) {
	return nil, errors.New("-reuseport is not supported on this system")
}
