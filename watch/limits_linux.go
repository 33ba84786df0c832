package watch

import (
	"errors"
	"fmt"
	"syscall"
)

// explainAdd wraps an error of adding a watch on dir. inotify_add_watch fails
// with ENOSPC when the per-user watch limit is reached, not when a disk is
// full (inotify(7)), so the message names the sysctl to raise.
func explainAdd(dir string, watched int, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("watch %s: inotify watch limit reached (%d directories): raise fs.inotify.max_user_watches, e.g. sysctl fs.inotify.max_user_watches=524288: %w", dir, watched, err)
	}
	return fmt.Errorf("watch %s: %w", dir, err)
}

// explainInit wraps an error of creating the inotify instance. inotify_init1
// fails with EMFILE when the per-user instance limit is reached (or the
// process's open file limit).
func explainInit(err error) error {
	if errors.Is(err, syscall.EMFILE) {
		return fmt.Errorf("watch: create inotify instance: too many inotify instances or open files: raise fs.inotify.max_user_instances, e.g. sysctl fs.inotify.max_user_instances=1024 (or ulimit -n): %w", err)
	}
	return fmt.Errorf("watch: create inotify instance: %w", err)
}
