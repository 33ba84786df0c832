// Package reaper makes the master the reaper of the orphans its workers
// leave: as PID 1 of a container every orphan of the namespace comes to
// it, and elsewhere it becomes a child subreaper (PR_SET_CHILD_SUBREAPER),
// so that a worker's descendants that detach (a double fork, setsid,
// nohup) come back to it instead of to init. It waits for them when they
// exit (no zombie is left), kills them once the worker they came from has
// exited, and kills whatever is left when the master stops.
//
// Invariant: the reaper never waits for a child that another part of the
// process waits for. There is no wait4(-1) (hashicorp/go-reap explains how
// one beside per-child waits steals exit statuses): it reads the list of
// children (/proc/self/task/*/children) and waits for one PID at a time,
// only for a process that is neither recorded as this process's own nor
// in its process group. A process is recorded as own by starting it
// through [Reaper.Fork] (the pool's workers, the development builds, the
// keeper), under a lock that a scan takes exclusively, so even a child
// that exits at once is recorded before any scan can see it. Children
// started without a process group of their own (the new master of a
// binary upgrade, which tableflip starts with os.StartProcess) stay in the
// master's group and are left alone too. Workers lead their own groups,
// and so does anything they leave that detached.
//
// # Which worker an orphan came from
//
// A re-parented process no longer says who started it. The reaper
// attributes it to the worker whose process group it is still in, or to
// the one named by the worker contract's HOTCLUSTER_GENERATION and
// HOTCLUSTER_WORKER_ID in its environment (inherited by every descendant
// that keeps its environment), the latest of that slot to start before
// it. Once that worker has exited, the orphan is killed. An orphan it
// cannot attribute (a program that cleared its environment and left its
// group) is killed when the master stops. Where the master can make
// cgroups (package internal/cgroup), the worker's cgroup is the exact
// answer and this is a second line.
package reaper
