package cli

import (
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/internal/handoff"
)

// --balance: hash by default, sticky on request (also from the config
// file), anything else a usage error naming the choices; sticky with
// --handoff shared a usage error saying why.
func TestBalanceFlag(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	for args, want := range map[string]handoff.Balance{"": handoff.BalanceHash, "hash": handoff.BalanceHash, "sticky": handoff.BalanceSticky} {
		argv := []string{"hotcluster", "run"}
		if args != "" {
			argv = append(argv, "--balance", args)
		}
		rc, err := reparseRun(append(argv, "--", exe))
		if err != nil {
			t.Fatalf("--balance %q: %v", args, err)
		}
		if rc.Sockets.Balance != want {
			t.Errorf("--balance %q: %v, want %v", args, rc.Sockets.Balance, want)
		}
	}
	file := writeConfig(t, "balance = \"sticky\"\ncommand = [\""+exe+"\"]\n")
	if rc, err := reparseRun([]string{"hotcluster", "run", "--config", file}); err != nil || rc.Sockets.Balance != handoff.BalanceSticky {
		t.Errorf("balance = \"sticky\" in the config file: %v", err)
	}
	_, err := reparseRun([]string{"hotcluster", "run", "--balance", "cookie", "--", exe})
	if ue, ok := err.(*usageError); !ok || ue.Error() != `--balance "cookie": want hash or sticky` {
		t.Errorf("--balance cookie: %v; want a usage error naming the modes", err)
	}
	_, err = reparseRun([]string{"hotcluster", "run", "--balance", "sticky", "--handoff", "shared", "--", exe})
	if ue, ok := err.(*usageError); !ok || !strings.Contains(ue.Error(), "--handoff shared") {
		t.Errorf("--balance sticky --handoff shared: %v; want a usage error saying why", err)
	}
}
