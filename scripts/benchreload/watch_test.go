package main

import (
	"io"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestMain runs the tests, or, in a process a test started with
// BENCHRELOAD_TEST_ROLE=wait-stdin, waits until its stdin closes and exits.
func TestMain(m *testing.M) {
	if os.Getenv("BENCHRELOAD_TEST_ROLE") == "wait-stdin" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestGenWatcher starts a child with HOTCLUSTER_GENERATION=3 and checks that
// a watcher of this process sees it come and go.
func TestGenWatcher(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BENCHRELOAD_TEST_ROLE=wait-stdin", "HOTCLUSTER_GENERATION=3")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	w := newGenWatcher(os.Getpid())
	defer w.stop()
	// The child may still be between fork and exec: poll until the
	// generation shows, within a bound.
	deadline := time.Now().Add(10 * time.Second)
	for gens := w.generations(); len(gens) != 1 || gens[0] != 3; gens = w.generations() {
		if time.Now().After(deadline) {
			t.Fatalf("generations %v, want [3]", gens)
		}
		w.poll()
	}
	mid := time.Now()
	if _, ok := w.lastGone(3, mid); ok {
		t.Fatal("lastGone reports the running child as gone")
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	w.poll()
	last, ok := w.lastGone(3, mid)
	if !ok || last.Before(mid) {
		t.Fatalf("lastGone(3) = %v, %v; want a time after %v", last, ok, mid)
	}
	if _, ok := w.lastGone(2, mid); ok {
		t.Error("lastGone(2) counts a generation-3 worker")
	}
	if _, ok := w.lastGone(3, time.Now()); ok {
		t.Error("lastGone counts a worker gone before the given time")
	}
}
