// Package cgroup reads this process's control groups and keeps a cgroup
// per worker, so that whatever a worker starts, however it detaches (a new
// session, a double fork, nohup), stops with it.
//
// Invariant: a [Tree] is a cgroup that this master made below its own, in
// the unified (v2) hierarchy; every worker starts inside a leaf of it
// (clone3 with CLONE_INTO_CGROUP, so not even the shim runs outside), and
// cgroup.kill on a leaf, or on the tree, kills every process in it, however
// it detached. A process cannot leave a cgroup without write access to a
// cgroup.procs above both, which a worker of another user (--user) never
// has, and which the master's own user has only under delegation.
//
// # Where a tree can be made
//
// In the unified hierarchy (pure v2, or the controller-less v2 tree that
// hybrid systems mount at /sys/fs/cgroup/unified), below the process's own
// cgroup, when that directory is writable: as root outside a container, or
// in a subtree systemd delegated (Delegate=yes in the unit, as `hotcluster
// unit` writes it; every systemd user manager's own). It needs no
// controller, only cgroup.kill (Linux 5.14). A container whose
// /sys/fs/cgroup is read-only, and most are, has none: [Open] then returns
// an error for which errors.Is(err, ErrUnavailable) holds, saying why.
//
// # CPU quota
//
// [CPUQuota] reads the CPU bandwidth limit of the process's cgroups as the
// Go runtime (1.25) does for GOMAXPROCS: cpu.max in v2, cpu.cfs_quota_us
// over cpu.cfs_period_us in v1 (hybrid layouts included), the smallest of
// the process's cgroup and its ancestors up to the mount's root.
package cgroup
