package keeper

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/internal/cgroup"
	"github.com/hotcluster/hotcluster/internal/sockowner"
	"github.com/hotcluster/hotcluster/signals"
	"golang.org/x/sys/unix"
)

// treeTimeout bounds the wait for a killed cgroup tree to empty.
const treeTimeout = 10 * time.Second

// Main is the keeper process: it reads its master's lines from fd 3 until
// the pipe ends and, unless the master said "exit", kills what the master
// left. master is the master's PID and pgrp its process group (whose
// members, the new master of an upgrade, are spared). It returns the exit
// code.
func Main(master, pgrp int, log *slog.Logger) int {
	signals.IgnoreStops()
	pipe := os.NewFile(3, "master")
	s, err := read(pipe)
	pipe.Close()
	if err != nil {
		log.Warn(fmt.Sprintf("keeper: read from the master (pid %d): %v", master, err))
	}
	if s.exit {
		return 0
	}
	killed := s.kill(master, pgrp, log)
	if len(killed) == 0 {
		log.Warn(fmt.Sprintf("keeper: the master (pid %d) died without stopping; nothing it started was left", master))
		return 0
	}
	log.Warn(fmt.Sprintf("keeper: the master (pid %d) died without stopping; killed %d processes it left: %s", master, len(killed), strings.Join(killed, "; ")))
	return 0
}

// kill kills everything the master told of, and returns what it killed.
func (s *state) kill(master, pgrp int, log *slog.Logger) []string {
	var killed []string
	seen := make(map[int]bool)
	note := func(pid int, why string) {
		if !seen[pid] {
			seen[pid] = true
			killed = append(killed, describe(pid)+why)
		}
	}
	if s.cgroup != "" {
		// Described before they are killed, while /proc still has them.
		for _, pid := range treeProcs(s.cgroup) {
			note(pid, "")
		}
		pids, err := cgroup.RemoveTree(s.cgroup, treeTimeout)
		for _, pid := range pids {
			note(pid, "")
		}
		if err != nil {
			log.Warn(fmt.Sprintf("keeper: cgroup %s: %v", s.cgroup, err))
		}
	}
	// The workers' process groups: whatever stayed in them.
	for _, pid := range membersOf(s.workers) {
		note(pid, "")
	}
	for g := range s.workers {
		unix.Kill(-g, unix.SIGKILL)
	}
	for pid, start := range s.orphans {
		if st, ok := startOf(pid); ok && st == start {
			note(pid, "")
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	if s.cgroup == "" && !s.hold && !s.handover && len(s.sockets) > 0 {
		self := os.Getpid()
		for _, holders := range sockowner.Find(s.sockets...) {
			for _, p := range holders {
				if p.PID == self || p.PID == master || pgrpOf(p.PID) == pgrp {
					continue
				}
				note(p.PID, ", which held a listening socket")
				unix.Kill(p.PID, unix.SIGKILL)
			}
		}
	}
	slices.Sort(killed)
	return killed
}

// treeProcs lists the processes of a cgroup tree: its own and its
// leaves'.
func treeProcs(dir string) []int {
	var out []int
	read := func(d string) {
		b, _ := os.ReadFile(d + "/cgroup.procs")
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	read(dir)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			read(dir + "/" + e.Name())
		}
	}
	return out
}

// membersOf lists the processes in the process groups groups.
func membersOf(groups map[int]bool) []int {
	if len(groups) == 0 {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && groups[pgrpOf(pid)] {
			out = append(out, pid)
		}
	}
	return out
}

// stat fields of pid: pgrp and start time (proc(5) fields 5 and 22).
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" {
		return nil, false
	}
	return f, true
}

func pgrpOf(pid int) int {
	f, ok := statFields(pid)
	if !ok {
		return -1
	}
	g, _ := strconv.Atoi(f[2])
	return g
}

func startOf(pid int) (uint64, bool) {
	f, ok := statFields(pid)
	if !ok {
		return 0, false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, err == nil
}

// describe is "pid 123 (sleep)".
func describe(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "pid " + strconv.Itoa(pid)
	}
	return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(b)))
}
