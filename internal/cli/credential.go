package cli

import (
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// lookupCredential resolves --user USER[:GROUP]: the user's primary group
// and supplementary groups unless GROUP is given.
func lookupCredential(spec string) (*syscall.Credential, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return nil, usagef("--user %q: no such user", spec)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if hasGroup {
		g, err := user.LookupGroup(group)
		if err != nil {
			if g, err = user.LookupGroupId(group); err != nil {
				return nil, usagef("--user %q: no such group %q", spec, group)
			}
		}
		gid, _ = strconv.ParseUint(g.Gid, 10, 32)
		c.Gid = uint32(gid)
	} else if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if n, err := strconv.ParseUint(id, 10, 32); err == nil {
				c.Groups = append(c.Groups, uint32(n))
			}
		}
	}
	if os.Geteuid() != 0 && (c.Uid != uint32(os.Geteuid()) || c.Gid != uint32(os.Getegid())) {
		return nil, usagef("--user %q: switching users needs root (hotcluster runs as uid %d)", spec, os.Geteuid())
	}
	if c.Groups == nil {
		c.Groups = []uint32{} // drop the master's supplementary groups
	}
	return c, nil
}
