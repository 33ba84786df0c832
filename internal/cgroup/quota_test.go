package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystem lays out files under a temporary root: paths to contents.
func fakeSystem(t *testing.T, files map[string]string) system {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return system{root}
}

const (
	mountV2      = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
	mountHybrid  = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs ro\n32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
	mountDocker1 = "40 39 0:29 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
)

func TestCPUQuota(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // Limit.String's file part and figures; "" for none
	}{
		{"v2 in a cgroup namespace", map[string]string{
			"/proc/self/cgroup":      "0::/\n",
			"/proc/self/mountinfo":   mountV2,
			"/sys/fs/cgroup/cpu.max": "200000 100000\n",
		}, "2 CPUs (ROOT/sys/fs/cgroup/cpu.max: 200000/100000 µs)"},
		{"v2 limit of an ancestor", map[string]string{
			"/proc/self/cgroup":                       "0::/kubepods/pod1/c1\n",
			"/proc/self/mountinfo":                    mountV2,
			"/sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "max 100000\n",
			"/sys/fs/cgroup/kubepods/pod1/cpu.max":    "150000 100000\n",
			"/sys/fs/cgroup/kubepods/cpu.max":         "400000 100000\n",
		}, "1.5 CPUs (ROOT/sys/fs/cgroup/kubepods/pod1/cpu.max: 150000/100000 µs)"},
		{"v2 quota without a period", map[string]string{
			"/proc/self/cgroup":        "0::/a\n",
			"/proc/self/mountinfo":     mountV2,
			"/sys/fs/cgroup/a/cpu.max": "50000\n",
		}, "0.5 CPUs (ROOT/sys/fs/cgroup/a/cpu.max: 50000/100000 µs)"},
		{"v2 without a limit", map[string]string{
			"/proc/self/cgroup":        "0::/a\n",
			"/proc/self/mountinfo":     mountV2,
			"/sys/fs/cgroup/a/cpu.max": "max 100000\n",
		}, ""},
		{"hybrid: v1 cpu beside a v2 tree without controllers", map[string]string{
			"/proc/self/cgroup":                               "4:cpu,cpuacct:/hc\n1:name=systemd:/\n0::/\n",
			"/proc/self/mountinfo":                            mountHybrid,
			"/sys/fs/cgroup/cpu,cpuacct/hc/cpu.cfs_quota_us":  "200000\n",
			"/sys/fs/cgroup/cpu,cpuacct/hc/cpu.cfs_period_us": "100000\n",
			"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":     "-1\n",
			"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us":    "100000\n",
			"/sys/fs/cgroup/unified/cgroup.controllers":       "",
		}, "2 CPUs (ROOT/sys/fs/cgroup/cpu,cpuacct/hc/cpu.cfs_quota_us: 200000/100000 µs)"},
		{"v1 without a limit", map[string]string{
			"/proc/self/cgroup":                               "4:cpu,cpuacct:/hc\n0::/\n",
			"/proc/self/mountinfo":                            mountHybrid,
			"/sys/fs/cgroup/cpu,cpuacct/hc/cpu.cfs_quota_us":  "-1\n",
			"/sys/fs/cgroup/cpu,cpuacct/hc/cpu.cfs_period_us": "100000\n",
		}, ""},
		{"v1 mounted at a container's own cgroup", map[string]string{
			"/proc/self/cgroup":                    "3:cpu:/docker/abc\n",
			"/proc/self/mountinfo":                 mountDocker1,
			"/sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "250000\n",
			"/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
		}, "2.5 CPUs (ROOT/sys/fs/cgroup/cpu/cpu.cfs_quota_us: 250000/100000 µs)"},
		{"a mount point with a space", map[string]string{
			"/proc/self/cgroup":       "0::/a\n",
			"/proc/self/mountinfo":    `30 23 0:26 / /sys/fs/my\040cg rw - cgroup2 cgroup2 rw` + "\n",
			"/sys/fs/my cg/a/cpu.max": "300000 100000\n",
		}, "3 CPUs (ROOT/sys/fs/my cg/a/cpu.max: 300000/100000 µs)"},
		{"no cgroup file system", map[string]string{
			"/proc/self/cgroup":    "0::/\n",
			"/proc/self/mountinfo": "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeSystem(t, tc.files)
			l, ok, err := s.cpuQuota()
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if ok {
				got = strings.ReplaceAll(l.String(), s.root, "ROOT")
			}
			if got != tc.want {
				t.Errorf("cpuQuota = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCPUQuotaBadFile(t *testing.T) {
	t.Parallel()
	s := fakeSystem(t, map[string]string{
		"/proc/self/cgroup":        "0::/a\n",
		"/proc/self/mountinfo":     mountV2,
		"/sys/fs/cgroup/a/cpu.max": "lots\n",
	})
	if _, _, err := s.cpuQuota(); err == nil || !strings.Contains(err.Error(), "cpu.max") {
		t.Fatalf("cpuQuota = %v, want an error naming cpu.max", err)
	}
}

func TestV2Dir(t *testing.T) {
	t.Parallel()
	s := fakeSystem(t, map[string]string{
		"/proc/self/cgroup":    "4:cpu,cpuacct:/x\n0::/system.slice/app.service\n",
		"/proc/self/mountinfo": mountHybrid,
	})
	dir, top, err := s.v2Dir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(s.root, "/sys/fs/cgroup/unified/system.slice/app.service"); dir != want || top != filepath.Join(s.root, "/sys/fs/cgroup/unified") {
		t.Fatalf("v2Dir = %s, %s; want %s below the unified mount", dir, top, want)
	}
	// A cgroup outside the namespace's view ("/.." in /proc/self/cgroup)
	// cannot be reached.
	s = fakeSystem(t, map[string]string{
		"/proc/self/cgroup":    "0::/../other\n",
		"/proc/self/mountinfo": mountV2,
	})
	if _, _, err := s.v2Dir(); err == nil {
		t.Fatal("v2Dir of a cgroup outside the mount: no error")
	}
}
