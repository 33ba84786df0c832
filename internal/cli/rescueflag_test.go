package cli

import (
	"testing"

	"github.com/hotcluster/hotcluster/internal/rescue"
)

// --rescue: queue by default, http and off on request, anything else a
// usage error naming the choices.
func TestRescueFlag(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	for args, want := range map[string]rescue.Mode{"": rescue.Queue, "http": rescue.HTTP, "queue": rescue.Queue, "off": rescue.Off} {
		argv := []string{"hotcluster", "run"}
		if args != "" {
			argv = append(argv, "--rescue", args)
		}
		rc, err := reparseRun(append(argv, "--", exe))
		if err != nil {
			t.Fatalf("--rescue %q: %v", args, err)
		}
		if rc.Rescue != want {
			t.Errorf("--rescue %q: mode %v, want %v", args, rc.Rescue, want)
		}
	}
	_, err := reparseRun([]string{"hotcluster", "run", "--rescue", "tls", "--", exe})
	if ue, ok := err.(*usageError); !ok || ue.Error() != `--rescue mode "tls": want http, queue or off` {
		t.Errorf("--rescue tls: %v; want a usage error naming the modes", err)
	}
}
