package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/workers"
)

// --rollout: the whole generation by default, K or P% on request, from the
// command line or the config file; anything else a usage error.
func TestRolloutFlag(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	for args, want := range map[string]workers.Rollout{"": {}, "all": {}, "1": {Workers: 1}, "3": {Workers: 3}, "50%": {Percent: 50}} {
		argv := []string{"hotcluster", "run", "--config", ""}
		if args != "" {
			argv = append(argv, "--rollout", args)
		}
		rc, err := reparseRun(append(argv, "--", exe))
		if err != nil {
			t.Fatalf("--rollout %q: %v", args, err)
		}
		if rc.Pool.Rollout != want {
			t.Errorf("--rollout %q: %+v, want %+v", args, rc.Pool.Rollout, want)
		}
	}
	for _, bad := range []string{"0", "-2", "0%", "150%", "half"} {
		_, err := reparseRun([]string{"hotcluster", "run", "--config", "", "--rollout", bad, "--", exe})
		if ue, ok := err.(*usageError); !ok || !strings.Contains(ue.Error(), "--rollout") || !strings.Contains(ue.Error(), "want") {
			t.Errorf("--rollout %s: %v; want a usage error saying what is wanted", bad, err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "hotcluster.toml")
	if err := os.WriteFile(cfg, []byte("rollout = \"25%\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := reparseRun([]string{"hotcluster", "run", "--config", cfg, "--", exe})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Pool.Rollout != (workers.Rollout{Percent: 25}) {
		t.Errorf("rollout = \"25%%\" in the config file: %+v", rc.Pool.Rollout)
	}
}
