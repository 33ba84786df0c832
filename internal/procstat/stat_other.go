//go:build !linux

package procstat

import "fmt"

// Read reads the figures of process pid. It needs Linux's /proc and returns
// an error wrapping [ErrNotSupported] elsewhere.
func Read(pid int) (Stat, error) {
	return Stat{}, fmt.Errorf("read process %d: %w", pid, ErrNotSupported)
}
