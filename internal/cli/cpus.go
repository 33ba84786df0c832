package cli

import (
	"fmt"
	"math"
	"runtime"

	"github.com/hotcluster/hotcluster/internal/cgroup"
)

// defaultWorkers is --workers when it is not given, and why, for the log:
// the CPU quota of the process's cgroups rounded up (at least 1), where it
// is no more than the number of CPUs the process may run on (its affinity mask,
// which runtime.NumCPU counts); else that number. A container limited to 2
// CPUs on a 24-core node gets 2 workers, not 24 (Go 1.25 sizes GOMAXPROCS
// the same way; runtime.NumCPU does not look at the quota).
func defaultWorkers() (int, string) {
	l, ok, err := cgroup.CPUQuota()
	return workerCount(runtime.NumCPU(), l, ok, err)
}

// workerCount is defaultWorkers for n CPUs and the quota l (if ok).
func workerCount(n int, l cgroup.Limit, ok bool, err error) (int, string) {
	switch q := int(math.Ceil(l.CPUs())); {
	case ok && q <= n:
		return max(1, q), "the CPU quota of its cgroup, " + l.String()
	case ok:
		return n, fmt.Sprintf("the %d CPUs it may run on, no more than the CPU quota of its cgroup (%s)", n, l)
	case err != nil:
		return n, fmt.Sprintf("the %d CPUs it may run on (the CPU quota could not be read: %v)", n, err)
	}
	return n, fmt.Sprintf("the %d CPUs it may run on (no CPU quota)", n)
}
