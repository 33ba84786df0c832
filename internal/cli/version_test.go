package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The child release --version names is the one CHANGELOG.md's newest entry
// releases with this master.
func TestChildVersionMatchesChangelog(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	newest := regexp.MustCompile(`(?m)^## (.*)$`).FindStringSubmatch(string(b))
	if newest == nil {
		t.Fatal("CHANGELOG.md has no entry")
	}
	tags := regexp.MustCompile(`child/(v\d+\.\d+\.\d+\S*)`).FindStringSubmatch(newest[1])
	if tags == nil || tags[1] != childVersion {
		t.Errorf("CHANGELOG.md's newest entry %q names child %v; internal/cli/version.go says %s", newest[1], tags, childVersion)
	}
}

// hotcluster --version: the product's version, the child release, the Go
// release and the platform, on one line.
func TestVersionLine(t *testing.T) {
	t.Parallel()
	code, out, _ := hotclusterOut(t, nil, "--version")
	want := regexp.MustCompile(`^hotcluster (dev|dev-[0-9a-f]{12}(-dirty)?|v\d+\.\d+\.\d+\S*) \(child ` + regexp.QuoteMeta(childVersion) + `, go\S+, linux/\w+\)\n$`)
	if code != 0 || !want.MatchString(out) {
		t.Errorf("--version: exit %d, %q; want %s", code, out, want)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("--version printed %d lines", strings.Count(out, "\n"))
	}
}
