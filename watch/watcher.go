package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet time that ends a burst of changes.
const DefaultDebounce = 100 * time.Millisecond

// MaxBurst bounds a burst: its Change is sent at most MaxBurst (or
// Config.Debounce, if longer) after its first event, even while events keep
// coming, so that a constant stream of changes still produces Changes.
const MaxBurst = 2 * time.Second

// Config says what to watch. A zero field means its default.
type Config struct {
	// Paths lists the files and directories to watch; default ["."]. A
	// directory is watched recursively, including the directories created in
	// it later. A file is watched through its directory and reported whatever
	// Ignore and Exts say. Paths are made absolute and resolved through
	// symbolic links, and Change.Files lie under the resolved paths. A file
	// named through a link is followed when the link, or a link it goes
	// through in the link's directory, is replaced (a ConfigMap's key).
	Paths []string

	// Ignore lists patterns in path.Match syntax, in addition to
	// DefaultIgnore. A pattern is matched against the base name of every
	// element of a path and against every leading part of the path relative
	// to the watched directory: "*.log" ignores log files anywhere, "tmp"
	// every file or directory named tmp, "vendor/*" everything below the
	// top-level vendor directory. An ignored directory is not watched.
	Ignore []string

	// Exts lists the endings of the file names to report, such as ".go" or
	// ".tmpl.html" ("go" means ".go"); empty reports every file.
	Exts []string

	// Debounce is the quiet time that ends a burst; zero means
	// DefaultDebounce.
	Debounce time.Duration

	// IgnorePaths lists files and directories, absolute or relative to the
	// working directory, that are never reported nor watched, such as the
	// build's output directory. They need not exist.
	IgnorePaths []string
}

// Change is one burst of changes.
type Change struct {
	// Files are the absolute paths, unique and sorted, of the files that were
	// created, written, removed or renamed (under either name) during the
	// burst and are kept by the filters. A watched directory that was
	// removed or renamed is listed itself, as the files it held are not
	// reported one by one when it is renamed. A file created during the burst
	// and gone by its end is left out: editors' temporary files.
	Files []string

	// Overflow reports that the kernel dropped events: Files may be
	// incomplete, even empty, so anything may have changed.
	Overflow bool
}

// Watcher watches the trees of a Config. [New] starts watching; [Watcher.Run]
// delivers the changes and releases everything when it returns.
type Watcher struct {
	fsw      *fsnotify.Watcher
	filter   *filter
	debounce time.Duration
	changes  chan Change

	// dirs holds the watched directories. New fills it, then only Run's
	// goroutine touches it.
	dirs map[string]struct{}

	mu      sync.Mutex
	started bool // Run or Close has been called
}

// New resolves cfg.Paths, which must exist, and watches every directory of
// their trees that is not ignored. Its errors name the path at fault; on
// Linux, reaching an inotify limit is an error naming the sysctl to raise. On
// error nothing is left open. Events are queued from the moment New returns,
// and delivered once [Watcher.Run] runs.
func New(cfg Config) (*Watcher, error) {
	if cfg.Debounce < 0 {
		return nil, fmt.Errorf("watch: debounce %v: want a positive duration", cfg.Debounce)
	}
	paths := cfg.Paths
	if len(paths) == 0 {
		paths = []string{"."}
	}
	roots := make([]root, 0, len(paths))
	for _, p := range paths {
		r, err := resolve(p)
		if err != nil {
			return nil, err
		}
		roots = append(roots, r)
	}
	f, err := newFilter(roots, cfg.Ignore, cfg.Exts, cfg.IgnorePaths)
	if err != nil {
		return nil, err
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, explainInit(err)
	}
	w := &Watcher{
		fsw:      fsw,
		filter:   f,
		debounce: cmp.Or(cfg.Debounce, DefaultDebounce),
		changes:  make(chan Change),
		dirs:     make(map[string]struct{}),
	}
	for _, r := range roots {
		switch {
		case r.file:
			err = w.addDir(filepath.Dir(r.path))
			if err == nil && r.link != "" {
				err = w.addDir(filepath.Dir(r.link))
			}
		case !f.ignoredPath(r.path):
			err = w.addTree(r.path, nil)
		}
		if err != nil {
			fsw.Close()
			return nil, err
		}
	}
	return w, nil
}

// resolve makes an entry of Config.Paths a root.
func resolve(p string) (root, error) {
	abs, err := filepath.Abs(p)
	var real, dir string
	if err == nil {
		real, err = filepath.EvalSymlinks(abs)
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(real)
	}
	if err == nil && !fi.IsDir() {
		dir, err = filepath.EvalSymlinks(filepath.Dir(abs))
	}
	if err != nil {
		return root{}, fmt.Errorf("watch %s: %w", p, err)
	}
	r := root{path: real, file: !fi.IsDir()}
	// The link's directory is watched too, resolved: the same directory
	// watched under two names would be one inotify watch named once.
	if link := filepath.Join(dir, filepath.Base(abs)); r.file && link != real {
		r.link = link
	}
	return r, nil
}

// Changes delivers one Change per burst. It is closed when Run returns, or
// by Close if Run was never called.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Run delivers changes on Changes until ctx ends, then returns nil, or until
// watching fails, then returns the error: an inotify limit reached while
// watching a new directory, or an error reading events. Before it returns it
// releases the watcher and closes Changes; a Change not received by then is
// dropped. Sends to Changes never block Run: bursts that end while a Change
// waits for its receiver are merged into it. Run may be called once; it
// returns an error at once if it was called before or after Close.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	started := w.started
	w.started = true
	w.mu.Unlock()
	if started {
		return errors.New("watch: run: watcher already run or closed")
	}
	defer close(w.changes)
	defer w.fsw.Close()

	d := newDebouncer(w.debounce, max(MaxBurst, w.debounce))
	defer d.stop()
	var pending *Change // a Change waiting for its receiver
	for {
		var out chan<- Change
		var next Change
		if pending != nil {
			out, next = w.changes, *pending
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return nil // Close was called
			}
			if err := w.handle(ev, d); err != nil {
				return err
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return nil
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				return fmt.Errorf("watch: read events: %w", err)
			}
			// Lost events may include the creation of directories, which
			// would then go unwatched: walk the trees again.
			d.lost()
			if err := w.rescan(d); err != nil {
				return err
			}
		case <-d.C():
			if c, ok := d.flush(gone); ok {
				pending = merge(pending, c)
			}
		case out <- next:
			pending = nil
		}
	}
}

// Close releases a Watcher whose Run will not be called, and closes Changes.
// While Run runs, Close makes it return nil. Close is safe to call more than
// once and from any goroutine.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if !w.started {
		w.started = true
		close(w.changes)
	}
	w.mu.Unlock()
	return w.fsw.Close()
}

// handle applies one event to the watches and the burst.
func (w *Watcher) handle(ev fsnotify.Event, d *debouncer) error {
	p := ev.Name
	if ev.Op&^fsnotify.Chmod != 0 {
		if err := w.relink(filepath.Dir(p), d); err != nil {
			return err
		}
	}
	switch {
	case ev.Op&^fsnotify.Chmod == 0:
		// Attribute changes only: noise from indexers, backup tools and
		// chmod (fsnotify README, FAQ "Why do I get many Chmod events?").
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		if w.forget(p) {
			if w.filter.descend(p) {
				d.add(p, false)
			}
		} else if w.filter.keep(p) {
			d.add(p, false)
		}
	case ev.Has(fsnotify.Create):
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			if !w.filter.descend(p) {
				return nil
			}
			err := w.addTree(p, func(f string) { d.add(f, true) })
			if err != nil && !vanished(err) {
				return err
			}
			return nil
		}
		if w.filter.keep(p) {
			d.add(p, true)
		}
	default: // Write
		if w.filter.keep(p) {
			d.add(p, false)
		}
	}
	return nil
}

// relink follows the file roots named through a symbolic link in dir, or in
// any directory when dir is "", to their current targets. A link may be
// replaced without an event on its own name: a mounted ConfigMap's dir/key
// stays a link to ..data/key, and the kubelet swaps the version by renaming a
// new ..data_tmp link over ..data (kubernetes atomic_writer.go). A root whose
// target moved is reported under its new target, which is watched from now
// on (the old one's directory goes with the old version). A link that does
// not resolve, for a moment or for good, keeps its target: removing the link
// itself is reported as the removal of the file.
func (w *Watcher) relink(dir string, d *debouncer) error {
	for i := range w.filter.roots {
		r := &w.filter.roots[i]
		if r.link == "" || (dir != "" && filepath.Dir(r.link) != dir) {
			continue
		}
		target, err := filepath.EvalSymlinks(r.link)
		if err != nil || target == r.path {
			continue
		}
		if err := w.addDir(filepath.Dir(target)); err != nil {
			if vanished(err) {
				continue // replaced again meanwhile: its event follows
			}
			return err
		}
		r.path = target
		d.add(target, false)
	}
	return nil
}

// addTree watches top and every directory below it that the filter lets in.
// When report is not nil it receives the kept files found in directories that
// were not watched before: those that arrived with a new directory.
// Directories below top that vanish or cannot be read while it walks are
// skipped.
func (w *Watcher) addTree(top string, report func(string)) error {
	fresh := make(map[string]bool)
	return filepath.WalkDir(top, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p != top && vanished(err) {
				return nil
			}
			return fmt.Errorf("watch %s: %w", p, err)
		}
		if !de.IsDir() {
			if report != nil && fresh[filepath.Dir(p)] && w.filter.keep(p) {
				report(p)
			}
			return nil
		}
		if p != top && !w.filter.descend(p) {
			return filepath.SkipDir
		}
		if _, ok := w.dirs[p]; ok {
			return nil // its subdirectories may still be new
		}
		// Watched before it is read (WalkDir reads it after this returns):
		// a file created meanwhile is found by the walk, raises an event, or
		// both.
		if err := w.addDir(p); err != nil {
			if p != top && vanished(err) {
				return filepath.SkipDir
			}
			return err
		}
		fresh[p] = true
		return nil
	})
}

// addDir watches the directory dir.
func (w *Watcher) addDir(dir string) error {
	if _, ok := w.dirs[dir]; ok {
		return nil
	}
	if err := w.fsw.Add(dir); err != nil {
		return explainAdd(dir, len(w.dirs), err)
	}
	w.dirs[dir] = struct{}{}
	return nil
}

// forget stops watching p and the directories below it, and reports whether
// p was a watched directory. The kernel drops the watch of a removed
// directory by itself, but the watches below a renamed one stay, and fsnotify
// keeps them under their old names and hands them out again, still under
// those names, when the directory is added under its new one (only the moved
// directory gets IN_MOVE_SELF). Hence they are removed here, before the
// event of the new name is handled.
func (w *Watcher) forget(p string) bool {
	if _, ok := w.dirs[p]; !ok {
		return false
	}
	for dir := range w.dirs {
		if _, ok := below(dir, p); ok || dir == p {
			// An error means the watch is gone already.
			_ = w.fsw.Remove(dir)
			delete(w.dirs, dir)
		}
	}
	return true
}

// rescan walks every tree again after events were lost, watching the
// directories that appeared meanwhile and reporting the files in them.
func (w *Watcher) rescan(d *debouncer) error {
	live := make(map[string]bool)
	for _, dir := range w.fsw.WatchList() {
		live[dir] = true
	}
	for dir := range w.dirs {
		if !live[dir] {
			delete(w.dirs, dir) // removed while events were lost
		}
	}
	if err := w.relink("", d); err != nil {
		return err
	}
	for _, r := range w.filter.roots {
		var err error
		switch {
		case r.file:
			err = w.addDir(filepath.Dir(r.path))
			if err == nil && r.link != "" {
				err = w.addDir(filepath.Dir(r.link))
			}
		case !w.filter.ignoredPath(r.path):
			err = w.addTree(r.path, func(f string) { d.add(f, true) })
		}
		if err != nil && !vanished(err) {
			return err
		}
	}
	return nil
}

// vanished reports whether err says that a path is gone, or not a directory
// any more, or cannot be read: a directory to skip, not a failure.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOTDIR)
}

// gone reports whether nothing exists at p.
func gone(p string) bool {
	_, err := os.Lstat(p)
	return errors.Is(err, fs.ErrNotExist)
}
