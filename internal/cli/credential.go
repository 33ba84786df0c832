package cli

import (
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// lookupCredential resolves --user USER[:GROUP]: the user's primary group
// and supplementary groups unless GROUP is given. A number that the user
// database does not know is taken as it is, with a GROUP given (a number
// too, or a known group), and no supplementary group: container images
// often run as a bare uid (Docker's USER 10001:10001, OpenShift's random
// uids) without a line in /etc/passwd, and there is no primary group to
// guess (Docker takes 0, root's group; hotcluster asks instead).
func lookupCredential(spec string) (*syscall.Credential, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	var c *syscall.Credential
	u, err := user.Lookup(name)
	if err != nil {
		u, err = user.LookupId(name)
	}
	if err == nil {
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	} else if uid, nerr := strconv.ParseUint(name, 10, 32); nerr != nil {
		return nil, usagef("--user %q: no such user", spec)
	} else if !hasGroup {
		return nil, usagef("--user %q: uid %d has no entry in the user database (/etc/passwd), so it has no primary group: give one, as in --user %d:%d", spec, uid, uid, uid)
	} else {
		c = &syscall.Credential{Uid: uint32(uid)}
	}
	if hasGroup {
		if g, err := user.LookupGroup(group); err == nil {
			gid, _ := strconv.ParseUint(g.Gid, 10, 32)
			c.Gid = uint32(gid)
		} else if g, err := user.LookupGroupId(group); err == nil {
			gid, _ := strconv.ParseUint(g.Gid, 10, 32)
			c.Gid = uint32(gid)
		} else if gid, err := strconv.ParseUint(group, 10, 32); err == nil {
			c.Gid = uint32(gid) // a bare gid, as a bare uid above
		} else {
			return nil, usagef("--user %q: no such group %q", spec, group)
		}
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
