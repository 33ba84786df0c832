package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is the product's release, "v1.2.3", set by scripts/release with
// -ldflags "-X github.com/hotcluster/hotcluster/internal/cli.version=v1.2.3".
// Without it, fullVersion asks the build information.
var version = ""

// childVersion is the release of the worker library, module
// github.com/hotcluster/hotcluster/child (tag child/vX.Y.Z), that goes with
// this master: the one whose copy of the worker contract it speaks. The two
// modules share no package, so the binary cannot learn it from its build
// information. CHANGELOG.md's newest entry names the same release
// (TestChildVersionMatchesChangelog), and scripts/release refuses to build
// a product tag whose child tag is missing.
const childVersion = "v0.1.0"

// fullVersion is version, or without -X the module version (`go install
// …@v1.2.3`) or the commit the binary was built from, so that `hotcluster
// status` tells which binary serves after an upgrade.
func fullVersion() string {
	if version != "" {
		return version
	}
	const dev = "dev"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return dev
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return dev
	}
	return dev + "-" + rev + dirty
}

// versionLine is what `hotcluster --version` prints after the name: the
// product's version, the worker library's that goes with it, and the Go
// release and platform it was built with (what a bug report needs).
func versionLine() string {
	return fmt.Sprintf("%s (child %s, %s, %s/%s)", fullVersion(), childVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func init() {
	// urfave/cli prints "hotcluster version X"; `--version` of most tools
	// prints "NAME X".
	cli.VersionPrinter = func(c *cli.Context) {
		fmt.Fprintf(c.App.Writer, "%s %s\n", c.App.Name, c.App.Version)
	}
}
