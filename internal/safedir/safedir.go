package safedir

import (
	"io/fs"
	"os"
	"os/user"
	"strconv"
)

// Policy says which directories Open accepts as the last one; the
// directories above it are always held to the sticky rule (see [StickyOK]).
type Policy int

const (
	// OwnerOnly accepts a directory that nobody but its owner, root or
	// this user, can write.
	OwnerOnly Policy = iota
	// StickyOK also accepts a directory that others may write if it has
	// the sticky bit (as /tmp): they may add names but not rename or
	// remove ours. For callers that create names exclusively and remove
	// only those that are still theirs.
	StickyOK
)

// FileID identifies a file: its device and inode numbers, and its birth
// time (nanoseconds since the epoch) where the file system records one.
type FileID struct {
	Dev, Ino uint64
	Birth    int64
}

// Entry describes a name in a directory, not following a symlink.
type Entry struct {
	ID FileID
	// Mode has the type and permission bits.
	Mode     fs.FileMode
	UID, GID uint32
}

// String describes the entry for messages: "a symlink of uid 65534
// (nobody)".
func (e Entry) String() string {
	return kind(e.Mode) + " of " + ownerName(e.UID)
}

// Ours reports whether the entry belongs to this process's effective user.
func (e Entry) Ours() bool { return e.UID == uint32(os.Geteuid()) }

// UnsafeError reports a directory, symlink or file through which another
// user could plant or swap a name where the master works.
type UnsafeError struct {
	// Path is the directory, symlink or file at fault.
	Path string
	// Reason says what is wrong with it and what to do.
	Reason string
}

func (e *UnsafeError) Error() string { return e.Path + ": " + e.Reason }

// trusted users may change what the master works with: root and the
// master's own user.
func trusted(uid uint32) bool { return uid == 0 || uid == uint32(os.Geteuid()) }

func trustedNames() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return "root or " + ownerName(uint32(os.Geteuid()))
}

// ownerName is "uid 65534 (nobody)", or "uid 65534" when it has no name.
func ownerName(uid uint32) string {
	s := "uid " + strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		s += " (" + u.Username + ")"
	}
	return s
}

func kind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symlink"
	case fs.ModeSocket:
		return "a socket"
	case fs.ModeNamedPipe:
		return "a named pipe"
	default:
		return "a device"
	}
}
