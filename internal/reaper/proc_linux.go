package reaper

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
)

// stat is what /proc/PID/stat says of a process, as far as the reaper
// needs.
type stat struct {
	comm  string
	state byte // R, S, D, Z, T…
	ppid  int
	pgrp  int
	start uint64 // clock ticks after boot: with the PID, who it is
}

// readStat reads /proc/PID/stat. A zombie still has its group and its
// start time.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	return parseStat(b)
}

var errStat = errors.New("reaper: malformed /proc/PID/stat")

func parseStat(b []byte) (stat, error) {
	// The command name, in parentheses, may hold anything: the fields
	// start after its last closing parenthesis.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return stat{}, errStat
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 of proc(5): state; then ppid, pgrp, …; starttime is
	// field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, errStat
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return stat{}, errStat
	}
	return stat{comm: string(b[open+1 : end]), state: f[0][0], ppid: ppid, pgrp: pgrp, start: start}, nil
}

// startTime is pid's start time, 0 when it cannot be read.
func startTime(pid int) uint64 {
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return st.start
}

// maxEnviron bounds what is read of a process's environment.
const maxEnviron = 256 << 10

// environ returns the values of keys in pid's environment (as it was at
// its execve), "" for those it lacks or when it cannot be read.
func environ(pid int, keys ...string) []string {
	out := make([]string, len(keys))
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return out
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxEnviron))
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			continue
		}
		for i, want := range keys {
			if string(k) == want {
				out[i] = string(v)
			}
		}
	}
	return out
}

// children lists the PIDs whose parent is this process: every thread's
// /proc/self/task/TID/children (an orphan is re-parented to one of its
// threads), or, on a kernel without them (CONFIG_PROC_CHILDREN), every
// process's parent in /proc/*/stat.
func children() []int {
	self := os.Getpid()
	tasks, err := os.ReadDir("/proc/self/task")
	if err == nil {
		var out []int
		ok := false
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
			if err != nil {
				continue // a thread that ended meanwhile
			}
			ok = true
			for _, s := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(s); err == nil {
					out = append(out, pid)
				}
			}
		}
		if ok {
			return out
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.ppid == self {
			out = append(out, pid)
		}
	}
	return out
}
