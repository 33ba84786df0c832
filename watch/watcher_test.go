package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testDebounce is long enough that one save, or a loop of writes, is one
// burst even on a loaded machine running with -race.
const testDebounce = 250 * time.Millisecond

// tempDir returns a new directory resolved through symbolic links, as the
// watcher reports paths.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs a Watcher for cfg until the test ends.
func start(t *testing.T, cfg Config) *Watcher {
	t.Helper()
	if cfg.Debounce == 0 {
		cfg.Debounce = testDebounce
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, w)
	return w
}

// run runs w until the test ends, and checks that Run then returns nil
// promptly and closes Changes.
func run(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context ending")
		}
		if _, ok := <-w.Changes(); ok {
			t.Error("Changes not closed after Run returned")
		}
	})
}

// next returns the next Change, failing the test after 10s.
func next(t *testing.T, w *Watcher) Change {
	t.Helper()
	select {
	case c, ok := <-w.Changes():
		if !ok {
			t.Fatal("Changes closed")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no Change within 10s")
	}
	return Change{}
}

// expect checks that the next Change holds exactly want.
func expect(t *testing.T, w *Watcher, want ...string) {
	t.Helper()
	slices.Sort(want)
	if c := next(t, w); !slices.Equal(c.Files, want) || c.Overflow {
		t.Fatalf("Change = %+v, want Files %q", c, want)
	}
}

// expectAll reads Changes until every path in want was reported, failing on
// a path outside want: for changes that may take more than one burst.
func expectAll(t *testing.T, w *Watcher, want ...string) {
	t.Helper()
	missing := make(map[string]bool)
	for _, p := range want {
		missing[p] = true
	}
	for len(missing) > 0 {
		c := next(t, w)
		for _, f := range c.Files {
			if !slices.Contains(want, f) {
				t.Fatalf("Change %q holds %s, want only %q", c.Files, f, want)
			}
			delete(missing, f)
		}
	}
}

// quiet proves that nothing was reported since the last Change received: it
// writes a marker file in dir and expects the next Change to be exactly it.
func quiet(t *testing.T, w *Watcher, dir string) {
	t.Helper()
	marker := filepath.Join(dir, fmt.Sprintf("marker%d.go", time.Now().UnixNano()))
	write(t, marker, "marker")
	expect(t, w, marker)
}

func TestAtomicSave(t *testing.T) {
	t.Parallel()
	for _, exts := range [][]string{nil, {".go"}} {
		for _, tmp := range []string{".main.go.swp", "main.go.tmp123", "main.go.tmp", "main.go___jb_tmp___", "main.go.vsctmp", ".main.go4829174"} {
			t.Run(fmt.Sprintf("%s/exts=%v", tmp, exts), func(t *testing.T) {
				t.Parallel()
				dir := tempDir(t)
				main := filepath.Join(dir, "main.go")
				write(t, main, "package main // v1")
				w := start(t, Config{Paths: []string{dir}, Exts: exts})

				write(t, filepath.Join(dir, tmp), "package main // v2")
				if err := os.Rename(filepath.Join(dir, tmp), main); err != nil {
					t.Fatal(err)
				}
				expect(t, w, main)
				quiet(t, w, dir)
			})
		}
	}
}

// TestBackupSave saves as vim does with 'nowritebackup' off and
// 'backupcopy' no: rename the file to a backup, write it anew, remove the
// backup.
func TestBackupSave(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	main := filepath.Join(dir, "main.go")
	write(t, main, "v1")
	w := start(t, Config{Paths: []string{dir}})

	if err := os.Rename(main, main+"~"); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "4913"), "")
	os.Remove(filepath.Join(dir, "4913"))
	write(t, main, "v2")
	if err := os.Remove(main + "~"); err != nil {
		t.Fatal(err)
	}
	expect(t, w, main)
	quiet(t, w, dir)
}

func TestBurstOfWrites(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	f := filepath.Join(dir, "main.go")
	write(t, f, "")
	w := start(t, Config{Paths: []string{dir}})
	for i := range 100 {
		write(t, f, fmt.Sprint(i))
	}
	expect(t, w, f)
	quiet(t, w, dir)
}

func TestNewDirectories(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	w := start(t, Config{Paths: []string{dir}, Exts: []string{"go"}})

	// mkdir, then a file in it.
	a := filepath.Join(dir, "sub", "a.go")
	if err := os.Mkdir(filepath.Dir(a), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, a, "v1")
	expectAll(t, w, a)
	write(t, a, "v2")
	expect(t, w, a)

	// mkdir -p, and a file in the deepest directory at once.
	f := filepath.Join(dir, "x", "y", "z", "f.go")
	write(t, f, "v1")
	expectAll(t, w, f)
	g := filepath.Join(dir, "x", "y", "z", "g.go")
	write(t, g, "v1")
	expect(t, w, g)
	h := filepath.Join(dir, "x", "h.go")
	write(t, h, "v1")
	expect(t, w, h)

	// A tree that arrives whole, as from a git checkout or a rename: the
	// files already inside are reported.
	outside := tempDir(t)
	write(t, filepath.Join(outside, "pkg", "one.go"), "")
	write(t, filepath.Join(outside, "pkg", "deep", "two.go"), "")
	write(t, filepath.Join(outside, "pkg", "notes.txt"), "")
	pkg := filepath.Join(dir, "pkg")
	if err := os.Rename(filepath.Join(outside, "pkg"), pkg); err != nil {
		t.Fatal(err)
	}
	expectAll(t, w, filepath.Join(pkg, "one.go"), filepath.Join(pkg, "deep", "two.go"))
	write(t, filepath.Join(pkg, "deep", "three.go"), "")
	expect(t, w, filepath.Join(pkg, "deep", "three.go"))
	quiet(t, w, dir)
}

func TestIgnored(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	out := filepath.Join(dir, "out") // created later, like a build's output
	write(t, filepath.Join(dir, ".git", "index"), "")
	write(t, filepath.Join(dir, "node_modules", "x", "y.js"), "")
	write(t, filepath.Join(dir, "vendor", "m", "m.go"), "")
	w := start(t, Config{
		Paths:       []string{dir},
		Exts:        []string{".go"},
		Ignore:      []string{"*_gen.go", "vendor/*"},
		IgnorePaths: []string{out},
	})

	write(t, filepath.Join(dir, ".git", "index"), "v2")
	write(t, filepath.Join(dir, ".git", "objects", "ab", "cdef"), "")
	write(t, filepath.Join(dir, "node_modules", "x", "y.js"), "v2")
	write(t, filepath.Join(dir, "node_modules", "z", "z.go"), "")
	write(t, filepath.Join(dir, "vendor", "m", "m.go"), "v2")
	write(t, filepath.Join(dir, ".main.go.swp"), "")
	write(t, filepath.Join(dir, "notes.txt"), "")
	write(t, filepath.Join(dir, "api_gen.go"), "")
	write(t, filepath.Join(out, "server.go"), "")
	write(t, filepath.Join(out, "sub", "x.go"), "")
	quiet(t, w, dir)

	// Directories created ignored stay unwatched.
	write(t, filepath.Join(dir, "node_modules", "z", "z.go"), "v2")
	write(t, filepath.Join(out, "sub", "x.go"), "v2")
	quiet(t, w, dir)
}

func TestChmodAlone(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	f := filepath.Join(dir, "main.go")
	write(t, f, "")
	w := start(t, Config{Paths: []string{dir}})
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	quiet(t, w, dir)
}

func TestRemoveAndRenameDirectories(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	sub := filepath.Join(dir, "sub")
	a := filepath.Join(sub, "deep", "a.go")
	write(t, a, "")
	w := start(t, Config{Paths: []string{dir}, Exts: []string{".go"}})

	// Removal reports the files and the directories.
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	expectAll(t, w, a, sub, filepath.Dir(a))
	quiet(t, w, dir)

	// The same name again is watched again.
	write(t, a, "v2")
	expectAll(t, w, a)
	write(t, a, "v3")
	expect(t, w, a)

	// After a rename, the directory and those below it report their new
	// names.
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(sub, moved); err != nil {
		t.Fatal(err)
	}
	movedA := filepath.Join(moved, "deep", "a.go")
	expectAll(t, w, sub, movedA)
	quiet(t, w, dir)
	write(t, movedA, "v4")
	expect(t, w, movedA)
	write(t, filepath.Join(moved, "b.go"), "")
	expect(t, w, filepath.Join(moved, "b.go"))
}

func TestFilePath(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	cfg := filepath.Join(dir, "config.yaml")
	write(t, cfg, "v1")
	w := start(t, Config{Paths: []string{cfg}, Exts: []string{".go"}})

	write(t, filepath.Join(dir, "other.go"), "")
	write(t, filepath.Join(dir, "config.yaml.tmp"), "v2")
	if err := os.Rename(filepath.Join(dir, "config.yaml.tmp"), cfg); err != nil {
		t.Fatal(err)
	}
	expect(t, w, cfg)
	write(t, cfg, "v3") // still watched after the rename
	expect(t, w, cfg)
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	missing := filepath.Join(dir, "missing")
	_, err := New(Config{Paths: []string{dir, missing}})
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a missing path: error %v, want one naming %s", err, missing)
	}
	if _, err := New(Config{Paths: []string{dir}, Ignore: []string{"[z-a"}}); err == nil {
		t.Error("New with a bad pattern succeeded")
	}
	if _, err := New(Config{Paths: []string{dir}, Debounce: -time.Second}); err == nil {
		t.Error("New with a negative debounce succeeded")
	}
}

func TestCloseAndRunOnce(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	w, err := New(Config{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Changes(); ok {
		t.Error("Changes not closed by Close")
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("Run after Close returned nil")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Close while Run runs makes it return nil.
	w, err = New(Config{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	write(t, filepath.Join(dir, "a.go"), "") // lets Run start before Close
	if c := next(t, w); len(c.Files) != 1 {
		t.Fatalf("Change = %+v, want a.go", c)
	}
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of Close")
	}
}

// TestOverflow fills the kernel's event queue before Run reads it: the lost
// events give a Change with Overflow, and the watcher goes on, watching the
// directory created while events were lost.
func TestOverflow(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skip("no inotify queue limit to exceed:", err)
	}
	var queued int
	if _, err := fmt.Sscan(string(b), &queued); err != nil || queued > 1<<16 {
		t.Skipf("max_queued_events %q: too many events to overflow in a test", b)
	}
	dir := tempDir(t)
	w, err := New(Config{Paths: []string{dir}, Debounce: testDebounce})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() }) // if the test fails before run
	// fsnotify reads up to 4096 events ahead of its receiver. Consecutive
	// identical events are merged by the kernel, so alternate two files.
	files := [2]*os.File{}
	for i := range files {
		if files[i], err = os.Create(filepath.Join(dir, fmt.Sprint("f", i, ".go"))); err != nil {
			t.Fatal(err)
		}
		defer files[i].Close()
	}
	for i := range queued + 4096 + 1000 {
		if _, err := files[i%2].Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
	}
	late := filepath.Join(dir, "late", "x.go") // its directory's Create is lost
	write(t, late, "")

	run(t, w)
	for c := next(t, w); !c.Overflow; c = next(t, w) {
	}
	write(t, late, "v2")
	for c := next(t, w); !slices.Contains(c.Files, late); c = next(t, w) {
	}
}

// publish writes one version of a mounted ConfigMap in dir as the kubelet's
// atomic writer does: a new timestamped directory, a ..data_tmp link to it
// renamed over ..data, the user-visible links to ..data/KEY made once, the
// previous version removed. It returns the new version's directory.
func publish(t *testing.T, dir, prev string, files map[string]string) string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	must(err)
	for k, v := range files {
		write(t, filepath.Join(ts, k), v)
	}
	must(os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	for k := range files {
		if _, err := os.Lstat(filepath.Join(dir, k)); err != nil {
			must(os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)))
		}
	}
	if prev != "" {
		must(os.RemoveAll(prev))
	}
	return ts
}

// TestConfigMapKey watches one key of a mounted ConfigMap, a link that
// never changes itself: each swap of ..data is a change of the key, reported
// under its new target, again after the first target's directory is gone.
func TestConfigMapKey(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	ts := publish(t, dir, "", map[string]string{"config.yaml": "v1", "other": "x"})
	w := start(t, Config{Paths: []string{filepath.Join(dir, "config.yaml")}})
	for i := 2; i <= 4; i++ {
		ts = publish(t, dir, ts, map[string]string{"config.yaml": fmt.Sprintf("v%d", i), "other": "x"})
		expect(t, w, filepath.Join(ts, "config.yaml"))
	}
	// The key's link removed: the file is gone.
	if err := os.Remove(filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	expect(t, w, filepath.Join(dir, "config.yaml"))
}

// TestConfigMapDirectory watches a mounted ConfigMap's directory: a swap
// reports the new version's files, the old one's and the old version's
// directory (a watched directory removed): the ..2026_… names are not
// ignored.
func TestConfigMapDirectory(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	ts := publish(t, dir, "", map[string]string{"config.yaml": "v1"})
	w := start(t, Config{Paths: []string{dir}, Exts: []string{".yaml"}})
	for i := 2; i <= 3; i++ {
		prev := ts
		ts = publish(t, dir, prev, map[string]string{"config.yaml": fmt.Sprintf("v%d", i)})
		expectAll(t, w, prev, filepath.Join(prev, "config.yaml"), filepath.Join(ts, "config.yaml"))
	}
}

// TestSymlinkReplaced watches a file through a link that is itself
// replaced, by a rename over it, with one to another directory: the change
// is reported (the link, and the file under its new target), and later
// writes to the new target are too.
func TestSymlinkReplaced(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	v1, v2 := filepath.Join(dir, "v1", "app.conf"), filepath.Join(dir, "v2", "app.conf")
	write(t, v1, "one")
	write(t, v2, "two")
	link := filepath.Join(dir, "app.conf")
	if err := os.Symlink(v1, link); err != nil {
		t.Fatal(err)
	}
	w := start(t, Config{Paths: []string{link}})
	if err := os.Symlink(v2, filepath.Join(dir, "next")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "next"), link); err != nil {
		t.Fatal(err)
	}
	expect(t, w, link, v2)
	// The old target is no longer the file: a write to it is not
	// reported, in this Change or before it.
	write(t, v1, "ignored now")
	write(t, v2, "three")
	expect(t, w, v2)
}
