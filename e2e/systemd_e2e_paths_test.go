//go:build systemd_e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/internal/control"
)

// A unit made from a command line that works in the shell, with a relative
// worker command, works under systemd, which starts services in "/" with
// its own PATH; and root in a login session (a runtime directory of its
// own) finds the service with `hotcluster status` and no --name, as ls
// does.
func TestSystemdE2EUnitPaths(t *testing.T) {
	s := newSystemdNS(t)
	addr := freeAddr(t)
	hc := filepath.Join(s.in, "hotcluster")
	// In the binaries' directory, as a user would: ./hello.
	s.must("sh", "-c", "cd "+s.in+" && exec ./hotcluster unit --name hcrel --out /run/systemd/system -- --listen web="+addr+" --workers 1 -- ./hello")
	unit := s.must("systemctl", "cat", "hcrel.service")
	for _, want := range []string{"\nWorkingDirectory=" + s.in + "\n", " -- " + filepath.Join(s.in, "hello") + "\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("no %q in the unit:\n%s", want, unit)
		}
	}
	s.must("systemctl", "daemon-reload")
	s.must("systemctl", "start", "hcrel.service")
	defer s.run("systemctl", "stop", "hcrel.service")
	if st := s.show("hcrel", "ActiveState"); st != "active" {
		t.Fatalf("ActiveState=%s\n%s", st, s.journal("hcrel"))
	}
	assertServedBy(t, "tcp", addr, 1)

	s.must("mkdir", "-p", "/tmp/session")
	var st control.Status
	out := s.must("env", "XDG_RUNTIME_DIR=/tmp/session", hc, "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	if main := s.show("hcrel", "MainPID"); strconv.Itoa(st.PID) != main || st.Name != "hcrel" {
		t.Errorf("status without --name: %s pid %d, want hcrel, MainPID %s", st.Name, st.PID, main)
	}
}
