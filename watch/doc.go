// Package watch reports changes to trees of files, one [Change] per burst.
//
// The invariant: every change to a kept file made after [New] returns reaches
// [Watcher.Changes] in the Change of the burst it belongs to, sent once that
// burst has been quiet for [Config.Debounce] (or has lasted [MaxBurst]).
// Nothing ignored or filtered out is ever sent, and neither is a file that was
// created and gone again within one burst (an editor's temporary file).
//
// # Protocol
//
// [New] resolves [Config.Paths], walks them and watches every directory that
// is not ignored, so a missing path or an exhausted inotify limit fails before
// anything runs. [Watcher.Run] then drains the kernel's events until its
// context ends, and closes [Watcher.Changes] when it returns. The receiver
// should keep receiving: Run never blocks on a slow receiver, it merges the
// bursts that finish meanwhile into the Change it has not yet delivered.
//
// Directories are watched, never files: editors save by writing a temporary
// file and renaming it over the original, which ends a watch on the file
// itself (fsnotify README, FAQ "Watching a file doesn't work well"). A file
// named in Config.Paths is watched through its directory, filtered by name.
// Directories are watched recursively: a directory that appears (mkdir -p, a
// git checkout, a rename into the tree) is watched first and walked second,
// so the files already inside it are reported and the ones created later
// raise their own events. Chmod-only events are dropped (fsnotify FAQ "Why do
// I get many Chmod events?"). Symbolic links inside the trees are not
// followed.
//
// A file named through a symbolic link is watched at both ends: its
// target's directory, and the link's, where any event makes the watcher
// resolve the link again. A mounted Kubernetes ConfigMap needs this: its
// dir/key is a link to ..data/key that never changes, and the kubelet
// publishes a version by renaming a new ..data_tmp link over ..data, to a new
// timestamped directory, and removing the old one (atomic_writer.go). A link
// whose target moved is one change, reported under the new target. A watched
// ConfigMap directory needs nothing special: the ..2026_… directories and
// the ..data links are ordinary names inside the tree.
//
// # Linux notes
//
// Each watched directory takes one watch from fs.inotify.max_user_watches and
// each Watcher one instance from fs.inotify.max_user_instances; both limits
// are per user, shared with editors and other watchers. Reaching one is an
// error of New or Run that names the sysctl to raise. When the kernel's event
// queue overflows (fs.inotify.max_queued_events), events are lost: the next
// Change has Overflow set and the trees are walked again for new directories.
//
// This is hotcluster's only importer of fsnotify; it knows nothing of workers
// or builds.
package watch
