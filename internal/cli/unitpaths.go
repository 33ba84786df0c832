package cli

// What `hotcluster unit` does about paths: a command line that works in the
// shell runs in the shell's directory with the shell's PATH; a service runs
// in WorkingDirectory= with systemd's PATH, as User=. So the worker command
// and the path flags are made absolute, WorkingDirectory= is where the
// shell was (or --dir), and a path the service's user will not reach is
// warned about.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hotcluster/hotcluster/internal/devloop"
	"github.com/hotcluster/hotcluster/internal/master"
)

// pathFlags are run's flags whose value is a path of the master's.
var pathFlags = []string{"dir", "config", "pidfile", "control"}

// absoluteRunArgs returns run arguments with the values of pathFlags and
// the worker command made absolute: relative ones against cwd, a bare
// command name as the PATH of this shell found it (rc holds the parsed
// command line). A command from the config file stays there, and works
// since WorkingDirectory= is cwd.
func absoluteRunArgs(args []string, rc *master.Config, cwd string) []string {
	out := append([]string(nil), args...)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cwd, p)
	}
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			if i+1 < len(out) && rc.Pool.Command.Path != "" && !strings.Contains(out[i+1], devloop.Placeholder) {
				out[i+1] = rc.Pool.Command.Path
			}
			break
		}
		for _, n := range pathFlags {
			for _, f := range []string{"-" + n, "--" + n} {
				switch {
				case a == f && i+1 < len(out):
					i++
					out[i] = abs(out[i])
				case strings.HasPrefix(a, f+"="):
					out[i] = f + "=" + abs(strings.TrimPrefix(a, f+"="))
				}
			}
		}
	}
	return out
}

// account is who a path must be reachable by.
type account struct {
	name string
	uid  uint32
	gids []uint32
}

// serviceAccount is User= of the unit (root without one).
func serviceAccount(name string) (account, error) {
	if name == "" {
		return account{name: "root"}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return account{}, err
		}
	}
	a := account{name: u.Username}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	a.uid = uint32(uid)
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				a.gids = append(a.gids, uint32(g))
			}
		}
	}
	if g, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
		a.gids = append(a.gids, uint32(g))
	}
	return a, nil
}

// pathWarnings says which paths of the unit will not be there for the
// service: the hotcluster binary, WorkingDirectory= and the config file
// for the master's user (User=), the worker command, --dir and the
// arguments that name files for the workers' (run --user, else the
// master's); and paths in places that do not last (/tmp, a login
// session's /run/user/UID).
func pathWarnings(rc *master.Config, configFile, unitUser, exe, workDir string) []string {
	var warns []string
	svc, err := serviceAccount(unitUser)
	if err != nil {
		warns = append(warns, fmt.Sprintf("User=%s: no such user here; the service will not start where there is none", unitUser))
		svc = account{name: unitUser, uid: 1 << 31} // reaches only what everyone reaches
	}
	wrk := svc
	if cr := rc.Pool.Credential; cr != nil {
		wrk = account{name: "uid " + strconv.Itoa(int(cr.Uid)), uid: cr.Uid, gids: append([]uint32{cr.Gid}, cr.Groups...)}
		if u, err := user.LookupId(strconv.Itoa(int(cr.Uid))); err == nil {
			wrk.name = u.Username
		}
	}
	type check struct {
		what, path string
		who        account
		mode       uint32 // the bits the last element needs: 1 execute, 4 read
	}
	checks := []check{{"the hotcluster binary", exe, svc, 1}, {"WorkingDirectory=", workDir, svc, 1}}
	if f := configFile; f != "" {
		checks = append(checks, check{"the config file", f, svc, 4})
	}
	if p := rc.Pool.Command.Path; p != "" {
		checks = append(checks, check{"the worker command", p, wrk, 1})
	}
	if rc.Pool.Dir != "" {
		checks = append(checks, check{"--dir", rc.Pool.Dir, wrk, 1})
	}
	if len(rc.Pool.Command.Args) > 1 {
		for _, a := range rc.Pool.Command.Args[1:] {
			if strings.HasPrefix(a, "-") {
				continue
			}
			p := a
			if !filepath.IsAbs(p) {
				p = filepath.Join(workDir, p)
			}
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				checks = append(checks, check{"the worker's file " + a, p, wrk, 4})
			}
		}
	}
	seen := map[string]bool{}
	for _, c := range checks {
		// --dir is WorkingDirectory= too, when given: one warning.
		key := c.path + "\x00" + c.who.name
		if seen[key] {
			continue
		}
		seen[key] = true
		if _, err := os.Stat(c.path); errors.Is(err, fs.ErrNotExist) {
			warns = append(warns, fmt.Sprintf("%s %s does not exist here; the service needs it where it runs", c.what, c.path))
			continue
		}
		if why := volatile(c.path); why != "" {
			warns = append(warns, fmt.Sprintf("%s %s %s; move it to a lasting place such as /srv or /opt", c.what, c.path, why))
		}
		if why := unreachable(c.path, c.who, c.mode); why != "" {
			warns = append(warns, fmt.Sprintf("%s %s: %s cannot reach it: %s", c.what, c.path, c.who.name, why))
		}
	}
	return warns
}

// volatile says why a path will not last: it is in a temporary or
// session directory.
func volatile(path string) string {
	p := path
	if r, err := filepath.EvalSymlinks(path); err == nil {
		p = r
	}
	for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "is under " + d + ", which is emptied at boot (and a unit with PrivateTmp= sees another)"
		}
	}
	if rest, ok := strings.CutPrefix(p, "/run/user/"); ok {
		uid, _, _ := strings.Cut(rest, "/")
		return "is under /run/user/" + uid + ", which exists only while uid " + uid + " is logged in"
	}
	return ""
}

// unreachable says why who cannot reach path with the permission bits
// mode (1 execute, 4 read) on its last element: a directory on the way
// that who may not search, or the element's own mode. Root reaches
// everything.
func unreachable(path string, who account, mode uint32) string {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err.Error()
	}
	if who.uid == 0 {
		return ""
	}
	allowed := func(st *syscall.Stat_t, bits uint32) bool {
		perm := st.Mode & 0o777
		switch {
		case st.Uid == who.uid:
			return perm>>6&bits == bits
		case containsGID(who.gids, st.Gid):
			return perm>>3&bits == bits
		}
		return perm&bits == bits
	}
	var dirs []string // from the root down
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		dirs = append([]string{d}, dirs...)
		if d == "/" {
			break
		}
	}
	for _, d := range dirs {
		var st syscall.Stat_t
		if err := syscall.Stat(d, &st); err != nil {
			return err.Error()
		}
		if !allowed(&st, 1) {
			return fmt.Sprintf("%s is %04o, uid %d's, group %d's", d, st.Mode&0o7777, st.Uid, st.Gid)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return err.Error()
	}
	if !allowed(&st, mode) {
		need := map[uint32]string{1: "execute", 4: "read"}[mode]
		return fmt.Sprintf("it is %04o, uid %d's, group %d's: no %s permission", st.Mode&0o7777, st.Uid, st.Gid, need)
	}
	return ""
}

func containsGID(gids []uint32, g uint32) bool {
	for _, x := range gids {
		if x == g {
			return true
		}
	}
	return false
}
