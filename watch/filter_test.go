package watch

import (
	"strings"
	"testing"
)

func TestFilter(t *testing.T) {
	roots := []root{{path: "/p"}, {path: "/q/config.yaml", file: true}}
	f, err := newFilter(roots,
		[]string{"*.log", " tmp/ ", "./vendor/*", "gen/*.pb.go"},
		[]string{"go", " .html", ""},
		[]string{"/p/out", "relative/../ignored"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		keep bool
	}{
		{"/p/main.go", true},
		{"/p/web/index.html", true},
		{"/p/notes.txt", false},      // not one of Exts
		{"/p/main.go.tmp123", false}, // atomic writer's temporary file
		{"/p/.git/index", false},     // DefaultIgnore, as a directory
		{"/p/a/node_modules/x.go", false},
		{"/p/.main.go.swp", false},
		{"/p/main.go~", false},
		{"/p/.#main.go", false},
		{"/p/#main.go#", false},
		{"/p/main.go___jb_tmp___", false},
		{"/p/4913", false},
		{"/p/server.log", false},     // Ignore, base name
		{"/p/tmp/a.go", false},       // Ignore "tmp/", trimmed
		{"/p/a/tmp/a.go", false},     // base names match at any depth
		{"/p/vendor/x/a.go", false},  // relative path: "vendor/x" matches
		{"/p/a/vendor/x/a.go", true}, // "vendor/*" is anchored at the root
		{"/p/gen/api.pb.go", false},
		{"/p/gen/api.go", true},
		{"/p/out/server.go", false}, // IgnorePaths
		{"/p/output.go", true},      // only below /p/out
		{"/q/config.yaml", true},    // a file root ignores Exts
		{"/q/other.go", false},      // beside a file root
		{"/p", false},               // a root itself
		{"/elsewhere/a.go", false},
	}
	for _, tt := range tests {
		if got := f.keep(tt.path); got != tt.keep {
			t.Errorf("keep(%q) = %v, want %v", tt.path, got, tt.keep)
		}
	}
	for dir, want := range map[string]bool{
		"/p/pkg": true, "/p/.git": false, "/p/node_modules": false, "/p/vendor": true,
		"/p/vendor/x": false, "/p/out": false, "/p/out/sub": false, "/q": false, "/p/.idea": false,
	} {
		if got := f.descend(dir); got != want {
			t.Errorf("descend(%q) = %v, want %v", dir, got, want)
		}
	}
}

func TestFilterNestedRootsIgnore(t *testing.T) {
	// The pattern is relative to /p/sub, which is watched too: it applies.
	f, err := newFilter([]root{{path: "/p"}, {path: "/p/sub"}}, []string{"vendor/*"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.keep("/p/sub/vendor/a.go") {
		t.Error("kept /p/sub/vendor/a.go, ignored relative to root /p/sub")
	}
}

func TestFilterBadPattern(t *testing.T) {
	_, err := newFilter(nil, []string{"[a-"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `"[a-"`) {
		t.Errorf("newFilter with a bad pattern: error %v, want one naming it", err)
	}
}

func TestDefaultIgnoreValid(t *testing.T) {
	if _, err := newFilter(nil, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
}
