//go:build !linux

package devloop

import (
	"context"
	"syscall"
)

// IsTerminal reports false: the keyboard trigger is Linux only.
func IsTerminal(fd int) bool { return false }

// ReadKeys returns at once on this platform.
func ReadKeys(ctx context.Context, fd int, trigger func()) error { return nil }

func buildProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
