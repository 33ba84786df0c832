package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Why not a library: containerd/cgroups (the well-kept one) manages whole
// resource configurations and brings logrus, dbus and protobuf with it,
// opens its files by path where the master, as root, must go through
// internal/safedir, and has no descriptor for CLONE_INTO_CGROUP. What is
// needed here is two /proc files and five cgroup files.

// system is where the files of the kernel are: "/" but in tests, which
// build a fake /proc and /sys under a temporary directory.
type system struct{ root string }

func (s system) path(p string) string { return filepath.Join(s.root, p) }

// membership is one line of /proc/self/cgroup: the hierarchy, its
// controllers (none for v2) and the process's cgroup in it.
type membership struct {
	id          int
	controllers []string
	path        string
}

func (s system) memberships() ([]membership, error) {
	b, err := os.ReadFile(s.path("/proc/self/cgroup"))
	if err != nil {
		return nil, err
	}
	var out []membership
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		idText, rest, ok1 := strings.Cut(line, ":")
		ctrls, p, ok2 := strings.Cut(rest, ":")
		id, err := strconv.Atoi(idText)
		if !ok1 || !ok2 || err != nil {
			continue
		}
		m := membership{id: id, path: p}
		if ctrls != "" {
			m.controllers = strings.Split(ctrls, ",")
		}
		out = append(out, m)
	}
	return out, nil
}

// mount is a cgroup file system in /proc/self/mountinfo.
type mount struct {
	root, point string // the cgroup at the mount's top, and where it is mounted
	v2          bool
	controllers []string // of a v1 mount, from its super options
}

func (s system) mounts() ([]mount, error) {
	f, err := os.Open(s.path("/proc/self/mountinfo"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - type source super
		pre, post, ok := bytes.Cut(sc.Bytes(), []byte(" - "))
		if !ok {
			continue
		}
		f1, f2 := strings.Fields(string(pre)), strings.Fields(string(post))
		if len(f1) < 5 || len(f2) < 1 {
			continue
		}
		m := mount{root: unescape(f1[3]), point: s.path(unescape(f1[4]))}
		switch f2[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			if len(f2) >= 3 {
				m.controllers = strings.Split(f2[2], ",")
			}
		default:
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// errNoHierarchy: the process is in no mounted hierarchy of that kind.
var errNoHierarchy = errors.New("not mounted")

// dir is the directory of the process's cgroup in the hierarchy that want
// selects (v2, or the v1 one with a controller), and the mount point that
// bounds the walk up to its ancestors.
func (s system) dir(want func(m mount) bool, member func(membership) bool) (dir, top string, err error) {
	ms, err := s.memberships()
	if err != nil {
		return "", "", err
	}
	mounts, err := s.mounts()
	if err != nil {
		return "", "", err
	}
	for _, mb := range ms {
		if !member(mb) {
			continue
		}
		// Of the mounts of this hierarchy, the one whose root holds the
		// cgroup, deepest first (a container sees its own as "/").
		var best *mount
		for i := range mounts {
			m := &mounts[i]
			if !want(*m) {
				continue
			}
			if _, ok := below(mb.path, m.root); ok && (best == nil || len(m.root) > len(best.root)) {
				best = m
			}
		}
		if best == nil {
			continue
		}
		rel, _ := below(mb.path, best.root)
		return filepath.Join(best.point, rel), best.point, nil
	}
	return "", "", errNoHierarchy
}

// below returns p relative to root, if p is root or below it.
func below(p, root string) (string, bool) {
	if p == "/.." || strings.HasPrefix(p, "/../") {
		// A cgroup outside the namespace's root: no mount shows it.
		return "", false
	}
	p, root = path.Clean(p), path.Clean(root)
	if root == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if p == root {
		return "", true
	}
	if rest, ok := strings.CutPrefix(p, root+"/"); ok {
		return rest, true
	}
	return "", false
}

// v2Dir is the process's cgroup in the unified hierarchy.
func (s system) v2Dir() (dir, top string, err error) {
	dir, top, err = s.dir(func(m mount) bool { return m.v2 }, func(mb membership) bool { return mb.id == 0 && mb.controllers == nil })
	if err != nil {
		return "", "", fmt.Errorf("cgroup v2: %w", err)
	}
	return dir, top, nil
}

// v1Dir is the process's cgroup in the v1 hierarchy of controller.
func (s system) v1Dir(controller string) (dir, top string, err error) {
	dir, top, err = s.dir(func(m mount) bool { return !m.v2 && slices.Contains(m.controllers, controller) },
		func(mb membership) bool { return slices.Contains(mb.controllers, controller) })
	if err != nil {
		return "", "", fmt.Errorf("cgroup v1 %s: %w", controller, err)
	}
	return dir, top, nil
}
