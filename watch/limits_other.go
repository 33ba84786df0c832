//go:build !linux

package watch

import "fmt"

// explainAdd wraps an error of adding a watch on dir.
func explainAdd(dir string, watched int, err error) error {
	return fmt.Errorf("watch %s: %w", dir, err)
}

// explainInit wraps an error of creating the platform's watcher.
func explainInit(err error) error {
	return fmt.Errorf("watch: create watcher: %w", err)
}
