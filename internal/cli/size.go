package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize reads a memory size: a number of bytes, or with K, M, G or T
// (powers of 1024, as PM2's max_memory_restart; KB, KiB and the like are
// read the same).
func parseSize(s string) (uint64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*mult < 1<<20 || v*mult > 1<<50 {
		return 0, fmt.Errorf("size %q: want a size of 1M or more such as 512M or 1.5G", s)
	}
	return uint64(v * mult), nil
}

// formatSize writes bytes as MiB or GiB.
func formatSize(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
}
