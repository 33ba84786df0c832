package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Limit is a CPU bandwidth limit: Quota microseconds of CPU time in each
// Period, so Quota/Period CPUs.
type Limit struct {
	Quota, Period int64
	// File is where it was read: the cpu.max or cpu.cfs_quota_us of the
	// process's cgroup or of an ancestor.
	File string
}

// CPUs is the limit in CPUs, Quota/Period.
func (l Limit) CPUs() float64 { return float64(l.Quota) / float64(l.Period) }

// String says it for the log: "2 CPUs (/sys/fs/cgroup/cpu.max: 200000
// 100000)".
func (l Limit) String() string {
	return fmt.Sprintf("%s CPUs (%s: %d/%d µs)", strconv.FormatFloat(l.CPUs(), 'f', -1, 64), l.File, l.Quota, l.Period)
}

// CPUQuota returns the tightest CPU bandwidth limit of this process's
// cgroups, v2 and v1, and false when there is none (or no cgroup file
// system is mounted). An error says a file was there but did not read.
func CPUQuota() (Limit, bool, error) { return system{"/"}.cpuQuota() }

func (s system) cpuQuota() (Limit, bool, error) {
	var best Limit
	found := false
	keep := func(l Limit, ok bool) {
		if ok && (!found || l.CPUs() < best.CPUs()) {
			best, found = l, true
		}
	}
	var errs []error
	if dir, top, err := s.v2Dir(); err == nil {
		l, ok, err := walkUp(dir, top, readCPUMax)
		keep(l, ok)
		errs = append(errs, err)
	}
	if dir, top, err := s.v1Dir("cpu"); err == nil {
		l, ok, err := walkUp(dir, top, readCFS)
		keep(l, ok)
		errs = append(errs, err)
	}
	return best, found, errors.Join(errs...)
}

// walkUp applies read to dir and each directory above it up to top, and
// returns the smallest limit found.
func walkUp(dir, top string, read func(dir string) (Limit, bool, error)) (Limit, bool, error) {
	var best Limit
	found := false
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		l, ok, err := read(d)
		if err != nil {
			return Limit{}, false, err
		}
		if ok && (!found || l.CPUs() < best.CPUs()) {
			best, found = l, true
		}
		if d == filepath.Clean(top) || d == filepath.Dir(d) {
			return best, found, nil
		}
	}
}

// readCPUMax reads v2's cpu.max: "max 100000" (no limit) or "200000
// 100000". A cgroup without the cpu controller has no such file.
func readCPUMax(dir string) (Limit, bool, error) {
	file := filepath.Join(dir, "cpu.max")
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return Limit{}, false, nil
	}
	if err != nil {
		return Limit{}, false, fmt.Errorf("read %s: %w", file, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f) > 2 {
		return Limit{}, false, fmt.Errorf("read %s: %q: want QUOTA PERIOD", file, b)
	}
	if f[0] == "max" {
		return Limit{}, false, nil
	}
	period := int64(100000) // the kernel's default when only a quota is written
	if len(f) == 2 {
		if period, err = strconv.ParseInt(f[1], 10, 64); err != nil || period <= 0 {
			return Limit{}, false, fmt.Errorf("read %s: period %q", file, f[1])
		}
	}
	quota, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || quota <= 0 {
		return Limit{}, false, fmt.Errorf("read %s: quota %q", file, f[0])
	}
	return Limit{Quota: quota, Period: period, File: file}, true, nil
}

// readCFS reads v1's cpu.cfs_quota_us (-1: no limit) over
// cpu.cfs_period_us.
func readCFS(dir string) (Limit, bool, error) {
	qf, pf := filepath.Join(dir, "cpu.cfs_quota_us"), filepath.Join(dir, "cpu.cfs_period_us")
	qb, err := os.ReadFile(qf)
	if errors.Is(err, fs.ErrNotExist) {
		return Limit{}, false, nil
	}
	if err != nil {
		return Limit{}, false, fmt.Errorf("read %s: %w", qf, err)
	}
	quota, err := strconv.ParseInt(strings.TrimSpace(string(qb)), 10, 64)
	if err != nil {
		return Limit{}, false, fmt.Errorf("read %s: %q", qf, qb)
	}
	if quota <= 0 {
		return Limit{}, false, nil
	}
	pb, err := os.ReadFile(pf)
	if err != nil {
		return Limit{}, false, fmt.Errorf("read %s: %w", pf, err)
	}
	period, err := strconv.ParseInt(strings.TrimSpace(string(pb)), 10, 64)
	if err != nil || period <= 0 {
		return Limit{}, false, fmt.Errorf("read %s: %q", pf, pb)
	}
	return Limit{Quota: quota, Period: period, File: qf}, true, nil
}
