package watch

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// DefaultIgnore lists the patterns that are always ignored, in the syntax of
// [Config.Ignore]:
//
//   - version control and dependency stores: .git, .hg, .svn, .bzr, .jj,
//     node_modules;
//   - editor state that never feeds a build and, for JetBrains IDEs, is
//     rewritten constantly: .idea, .vscode, .DS_Store;
//   - editors' swap, lock, backup and save-temporary files: vim (*.swp,
//     *.swo, *.swn, *.swx, *~, and 4913, its write test), Emacs (.#*, #*#),
//     JetBrains safe write (*___jb_tmp___, *___jb_old___), VS Code atomic
//     write (*.vsctmp), Chromium's File System Access (*.crswap), GNOME's GIO
//     (.goutputstream-*);
//   - temporary files of atomic writers, which append .tmp, possibly followed
//     by a number or a dash and a random part: *.tmp, *.tmp[0-9]*,
//     *.tmp.[0-9]*, *.tmp-*;
//   - the binaries VS Code's Go debugger writes next to the sources
//     (__debug_bin*), and *.pid files.
//
// Temporary files with other names are still caught when they come and go
// within one burst (see [Change.Files]).
var DefaultIgnore = []string{
	".git", ".hg", ".svn", ".bzr", ".jj", "node_modules",
	".idea", ".vscode", ".DS_Store",
	"*.swp", "*.swo", "*.swn", "*.swx", "*~", "4913",
	".#*", "#*#",
	"*___jb_tmp___", "*___jb_old___",
	"*.vsctmp", "*.crswap", ".goutputstream-*",
	"*.tmp", "*.tmp[0-9]*", "*.tmp.[0-9]*", "*.tmp-*",
	"__debug_bin*", "*.pid",
}

// root is one entry of Config.Paths, absolute and resolved through symbolic
// links.
type root struct {
	path string
	file bool // a file: its directory is watched and only this path is kept

	// link is, for a file named through a symbolic link, that link: its
	// directory resolved, its name kept (a mounted ConfigMap's dir/key ->
	// ..data/key). path is then the link's current target, which Run's
	// goroutine updates when the link, or a link it goes through in its
	// directory, is replaced (see Watcher.relink).
	link string
}

// filter decides which directories are watched and which paths reported.
// Only New and then Run's goroutine use it; Run's goroutine alone changes
// it, through the targets of linked roots.
type filter struct {
	roots       []root
	ignore      []string // DefaultIgnore then Config.Ignore: slash-separated, valid
	exts        []string // each with its leading dot; none keeps every file
	ignorePaths []string // absolute and clean
}

// newFilter normalises and validates the filters of a Config.
func newFilter(roots []root, ignore, exts, ignorePaths []string) (*filter, error) {
	f := &filter{roots: roots}
	for _, p := range append(DefaultIgnore[:len(DefaultIgnore):len(DefaultIgnore)], ignore...) {
		p = strings.Trim(strings.TrimPrefix(filepath.ToSlash(strings.TrimSpace(p)), "./"), "/")
		if p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("watch: ignore pattern %q: %w", p, err)
		}
		f.ignore = append(f.ignore, p)
	}
	for _, e := range exts {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !strings.HasPrefix(e, ".") {
			e = "." + e
		}
		f.exts = append(f.exts, e)
	}
	for _, p := range ignorePaths {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("watch: ignore path %s: %w", p, err)
		}
		f.ignorePaths = append(f.ignorePaths, abs)
		// The roots are resolved through symbolic links, and so are the
		// paths of events; an ignored path that exists must be as well.
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
			f.ignorePaths = append(f.ignorePaths, real)
		}
	}
	return f, nil
}

// keep reports whether a change to the file at p is reported.
func (f *filter) keep(p string) bool {
	if f.ignoredPath(p) {
		return false
	}
	for _, r := range f.roots {
		if r.file && (r.path == p || r.link == p) {
			return true
		}
	}
	return f.inTree(p) && f.hasExt(p)
}

// descend reports whether the directory at p is watched.
func (f *filter) descend(p string) bool {
	return !f.ignoredPath(p) && f.inTree(p)
}

// inTree reports whether p lies strictly inside a watched directory tree
// and no ignore pattern matches it relative to any tree that holds it.
func (f *filter) inTree(p string) bool {
	in := false
	for _, r := range f.roots {
		if r.file {
			continue
		}
		rel, ok := below(p, r.path)
		if !ok {
			continue
		}
		if f.ignored(filepath.ToSlash(rel)) {
			return false
		}
		in = true
	}
	return in
}

// ignored reports whether an ignore pattern matches the base name of an
// element of the slash-separated relative path rel, or one of its leading
// parts ("a", "a/b", "a/b/c" for "a/b/c").
func (f *filter) ignored(rel string) bool {
	for start := 0; ; {
		end := len(rel)
		if i := strings.IndexByte(rel[start:], '/'); i >= 0 {
			end = start + i
		}
		lead, base := rel[:end], rel[start:end]
		for _, pat := range f.ignore {
			if ok, _ := path.Match(pat, base); ok {
				return true
			}
			if start > 0 {
				if ok, _ := path.Match(pat, lead); ok {
					return true
				}
			}
		}
		if end == len(rel) {
			return false
		}
		start = end + 1
	}
}

// ignoredPath reports whether p is, or lies below, one of Config.IgnorePaths.
func (f *filter) ignoredPath(p string) bool {
	for _, ip := range f.ignorePaths {
		if _, ok := below(p, ip); ok || p == ip {
			return true
		}
	}
	return false
}

// hasExt reports whether the name of p ends with one of Config.Exts.
func (f *filter) hasExt(p string) bool {
	if len(f.exts) == 0 {
		return true
	}
	base := filepath.Base(p)
	for _, e := range f.exts {
		if strings.HasSuffix(base, e) {
			return true
		}
	}
	return false
}

// below returns p relative to dir when p lies strictly inside dir; both are
// absolute and clean.
func below(p, dir string) (string, bool) {
	prefix := dir
	if !strings.HasSuffix(prefix, string(os.PathSeparator)) {
		prefix += string(os.PathSeparator)
	}
	if len(p) <= len(prefix) || !strings.HasPrefix(p, prefix) {
		return "", false
	}
	return p[len(prefix):], true
}
