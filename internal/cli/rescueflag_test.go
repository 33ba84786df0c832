package cli

import (
	"testing"

	"github.com/hotcluster/hotcluster/internal/rescue"
)

// --rescue: http by default, queue and off on request, anything else a
// usage error naming the choices.
func TestRescueFlag(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	for args, want := range map[string]rescue.Mode{"": rescue.HTTP, "http": rescue.HTTP, "queue": rescue.Queue, "off": rescue.Off} {
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

// --rescue LISTENER=MODE sets one listener's mode; a name that no --listen
// has is a usage error naming the listeners.
func TestRescueFlagPerListener(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	rc, err := reparseRun([]string{"hotcluster", "run", "--listen", "web=:8080", "--listen", "tls=:8443", "--rescue", "tls=queue", "--", exe})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Rescue != rescue.HTTP || rc.RescueFor["tls"] != rescue.Queue || len(rc.RescueFor) != 1 {
		t.Errorf("--rescue tls=queue: %v, %v; want http for all, queue for tls", rc.Rescue, rc.RescueFor)
	}
	_, err = reparseRun([]string{"hotcluster", "run", "--listen", "web=:8080", "--rescue", "api=off", "--", exe})
	if ue, ok := err.(*usageError); !ok || ue.Error() != `--rescue api=…: no --listen is named "api" (the listeners: web)` {
		t.Errorf("--rescue api=off: %v; want a usage error naming the listeners", err)
	}
	_, err = reparseRun([]string{"hotcluster", "run", "--rescue", "=off", "--", exe})
	if _, ok := err.(*usageError); !ok {
		t.Errorf("--rescue =off: %v; want a usage error", err)
	}
}
