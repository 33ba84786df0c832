package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/internal/cgroup"
)

func TestWorkerCount(t *testing.T) {
	t.Parallel()
	q := func(quota int64) cgroup.Limit { return cgroup.Limit{Quota: quota, Period: 100000, File: "/cg/cpu.max"} }
	for _, tc := range []struct {
		name  string
		cpus  int
		limit cgroup.Limit
		ok    bool
		err   error
		want  int
		why   string
	}{
		{"2 CPUs of quota on 24", 24, q(200000), true, nil, 2, "the CPU quota of its cgroup, 2 CPUs (/cg/cpu.max: 200000/100000 µs)"},
		{"rounded up", 24, q(150000), true, nil, 2, "the CPU quota of its cgroup, 1.5 CPUs"},
		{"at least 1", 24, q(20000), true, nil, 1, "the CPU quota of its cgroup, 0.2 CPUs"},
		{"a quota of every CPU", 4, q(400000), true, nil, 4, "the CPU quota of its cgroup, 4 CPUs"},
		{"a quota above the CPUs", 4, q(800000), true, nil, 4, "the 4 CPUs it may run on, no more than the CPU quota"},
		{"no quota", 4, cgroup.Limit{}, false, nil, 4, "the 4 CPUs it may run on (no CPU quota)"},
		{"an unreadable quota", 4, cgroup.Limit{}, false, errors.New("read /cg/cpu.max: bad"), 4, "could not be read: read /cg/cpu.max: bad"},
	} {
		n, why := workerCount(tc.cpus, tc.limit, tc.ok, tc.err)
		if n != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: workerCount = %d, %q; want %d, %q", tc.name, n, why, tc.want, tc.why)
		}
	}
}
