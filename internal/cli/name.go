package cli

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/devloop"
)

// defaultName names an instance after its program: the command's base
// name, or for an interpreter (node server.js) the script's.
func defaultName(argv []string) string {
	if len(argv) == 0 || strings.Contains(argv[0], devloop.Placeholder) {
		if wd, err := os.Getwd(); err == nil {
			return control.NameFrom(filepath.Base(wd))
		}
		return "hotcluster"
	}
	base := filepath.Base(argv[0])
	switch strings.TrimRight(base, "0123456789.") {
	case "node", "nodejs", "bun", "deno", "python", "ruby", "php", "perl":
		for _, a := range argv[1:] {
			if !strings.HasPrefix(a, "-") {
				return control.NameFrom(strings.TrimSuffix(filepath.Base(a), filepath.Ext(a)))
			}
		}
	}
	return control.NameFrom(base)
}

// controlPath is the socket an instance serves: --control, or its name's
// in the default directory.
func controlPath(name, path string) string {
	if path != "" {
		return path
	}
	return control.SocketPath(control.DefaultDir(), name)
}
