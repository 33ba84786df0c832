package watch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hotcluster/hotcluster/watch"
)

func Example() {
	dir, err := os.MkdirTemp("", "watch-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	w, err := watch.New(watch.Config{Paths: []string{dir}, Exts: []string{".go"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("filtered out"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main"), 0o644)
	select {
	case c := <-w.Changes():
		for _, f := range c.Files {
			fmt.Println(filepath.Base(f))
		}
	case <-time.After(10 * time.Second):
		fmt.Println("no change within 10s")
	}
	// Output: main.go
}
