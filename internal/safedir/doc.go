// Package safedir holds the rules for every path the master creates,
// changes or removes, usually as root: it never does so in a directory in
// which another user could plant a name or swap one for a symlink.
//
// Invariant: a [Dir] is a directory that only root and this process's
// effective user can change, reached through directories and symlinks that
// only they can change, so a name looked up in it cannot be replaced by
// anyone else between two operations. The one exception is a directory that
// others may write but that has the sticky bit (as /tmp), opened with
// [StickyOK]: others may create names there but not replace ours, so its
// callers create names exclusively ([Dir.BindUnix], [MkdirTemp]) and remove
// only a name that still is the file they made ([Dir.RemoveIfSame]).
//
// Operations on names go through the directory's descriptor and never follow
// a symlink at the last component: a socket is bound with its mode set on the
// socket before bind ([Dir.BindUnix]) and given to another user through an
// O_PATH descriptor of the file itself ([Dir.Chown]), never by path (the
// chown that follows a worker's symlink to a root file). Files are opened
// with O_NOFOLLOW and must be regular files of root's or this user's
// ([OpenFile], for pid and log files).
//
// What remains: unlinking is by name, so between [Dir.RemoveIfSame]'s check
// and its unlink a trusted user (root, or this user) could replace the file;
// and a file that such a user removed and replaced may get the same inode
// number (the birth time, where the file system keeps it, tells most of
// those apart). Nobody else can do either, which is what this package is
// for.
package safedir
