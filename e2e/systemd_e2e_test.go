//go:build systemd_e2e

package e2e

// End-to-end tests against a real systemd, booted by scripts/systemd-e2e in
// a private PID+mount namespace; they drive it with systemctl through
// nsenter and send their load on loopback (the namespace shares the host's
// network). Run them only through that script.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
)

type systemdNS struct {
	t   *testing.T
	pid string
	bin string // the binaries' directory, as this process sees it
	in  string // the same directory inside the namespace
}

func newSystemdNS(t *testing.T) *systemdNS {
	pid, bin, in := os.Getenv("HC_SYSTEMD_PID"), os.Getenv("HC_E2E_BIN"), os.Getenv("HC_E2E_BIN_NS")
	if pid == "" || bin == "" || in == "" {
		t.Fatal("run through scripts/systemd-e2e, which boots systemd and sets HC_SYSTEMD_PID, HC_E2E_BIN and HC_E2E_BIN_NS")
	}
	return &systemdNS{t: t, pid: pid, bin: bin, in: in}
}

// run runs a command inside the namespace and returns its output.
func (s *systemdNS) run(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", s.pid, "-m", "-p"}, args...)...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		cmd.Process.Kill()
		<-done
		return string(out), fmt.Errorf("%v: timed out", args)
	}
	return string(out), err
}

func (s *systemdNS) must(args ...string) string {
	s.t.Helper()
	out, err := s.run(args...)
	if err != nil {
		s.t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return out
}

// show returns a property of a unit.
func (s *systemdNS) show(unit, prop string) string {
	s.t.Helper()
	return strings.TrimSpace(s.must("systemctl", "show", unit, "-p", prop, "--value"))
}

// alive reports whether pid (as the namespace numbers it) exists there.
func (s *systemdNS) alive(pid string) bool {
	_, err := s.run("kill", "-0", pid)
	return err == nil
}

func (s *systemdNS) journal(unit string) string {
	out, _ := s.run("journalctl", "-u", unit, "--no-pager", "-o", "cat")
	return out
}

// freeAddr returns an address of 127.0.0.1 whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestSystemdE2E(t *testing.T) {
	s := newSystemdNS(t)
	addr := freeAddr(t)
	// The unit runs a copy of hotcluster's binary, which the broken-upgrade
	// scenario replaces.
	exeOut := filepath.Join(s.bin, "hotcluster-e2e")
	copyFile(t, filepath.Join(s.bin, "hotcluster"), exeOut)
	exe := filepath.Join(s.in, "hotcluster-e2e")
	hello := filepath.Join(s.in, "hello")
	s.must(filepath.Join(s.in, "hotcluster"), "unit", "--name", "hc", "--exec", exe, "--out", "/run/systemd/system",
		"--", "--listen", "web="+addr, "--workers", "2", "--drain-timeout", "10s", "--", hello)
	s.must("systemctl", "daemon-reload")
	s.must("systemctl", "start", "hc.service")
	defer s.run("systemctl", "stop", "hc.service")

	t.Run("start", func(t *testing.T) {
		if st := s.show("hc", "ActiveState"); st != "active" {
			t.Fatalf("ActiveState=%s", st)
		}
		main := s.show("hc", "MainPID")
		if cmdline := s.must("cat", "/proc/"+main+"/cmdline"); !strings.HasPrefix(cmdline, exe+"\x00run") {
			t.Errorf("MainPID %s runs %q, want the hotcluster master", main, cmdline)
		}
		if st := s.show("hc", "StatusText"); !strings.HasPrefix(st, "serving gen 1 with 2 workers") {
			t.Errorf("StatusText=%q", st)
		}
		assertServedBy(t, "tcp", addr, 1)
	})

	// The master writes to journald natively: each worker line with its
	// fields and a priority per stream (hello logs to stderr: err).
	t.Run("journal fields", func(t *testing.T) {
		hc := filepath.Join(s.in, "hotcluster")
		var st control.Status
		if err := json.Unmarshal([]byte(s.must(hc, "status", "--name", "hc", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		var pid int
		for _, w := range st.Workers {
			if w.Slot == 1 {
				pid = w.PID
			}
		}
		// This start of the unit's lines only: the journal may keep earlier
		// runs' (a persistent /var/log/journal, the same boot ID).
		inv := "_SYSTEMD_INVOCATION_ID=" + s.show("hc", "InvocationID")
		var got []map[string]string
		eventually(t, "slot 1's lines in the journal", func() bool {
			out, _ := s.run("journalctl", "-u", "hc", inv, "HOTCLUSTER_SLOT=1", "--no-pager", "-o", "json")
			got = nil
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				var e map[string]any
				if json.Unmarshal([]byte(l), &e) == nil {
					m := map[string]string{}
					for k, v := range e {
						m[k] = fmt.Sprint(v)
					}
					got = append(got, m)
				}
			}
			return len(got) > 0
		})
		for _, e := range got {
			if e["HOTCLUSTER_WORKER_PID"] != strconv.Itoa(pid) || e["SYSLOG_IDENTIFIER"] != "hc" || e["HOTCLUSTER_GENERATION"] != "1" {
				t.Errorf("journalctl HOTCLUSTER_SLOT=1 gave %v; want worker 1's (pid %d) lines of gen 1", e, pid)
			}
		}
		if e := got[0]; !strings.HasPrefix(e["MESSAGE"], "hello: serving on ") || e["PRIORITY"] != "3" || e["HOTCLUSTER_STREAM"] != "stderr" {
			t.Errorf("worker 1's first line: %v; want hello's line on stderr at priority 3", e)
		}
		errs := s.must("journalctl", "-u", "hc", inv, "-p", "err", "--no-pager", "-o", "cat")
		if !strings.Contains(errs, "hello: serving on ") || strings.Contains(errs, "hotcluster: serving") {
			t.Errorf("journalctl -p err:\n%s", errs)
		}
		if out := s.must(hc, "logs", "--name", "hc", "--worker", "1"); !strings.Contains(out, "[g1 w1 err] hello: serving on ") {
			t.Errorf("hotcluster logs --worker 1 under systemd:\n%s", out)
		}
	})

	t.Run("reload", func(t *testing.T) {
		stop := load(t, loadgen.Config{Addr: addr, Clients: 8})
		for gen := 2; gen <= 4; gen++ {
			s.must("systemctl", "reload", "hc.service")
			eventually(t, fmt.Sprintf("gen %d serving", gen), func() bool {
				return strings.HasPrefix(s.show("hc", "StatusText"), fmt.Sprintf("serving gen %d ", gen))
			})
		}
		assertNoFailures(t, stop())
		if st := s.show("hc", "ActiveState"); st != "active" {
			t.Fatalf("ActiveState=%s after reloads", st)
		}
		assertServedBy(t, "tcp", addr, 4)
	})

	t.Run("upgrade", func(t *testing.T) {
		old := s.show("hc", "MainPID")
		stop := load(t, loadgen.Config{Addr: addr, Clients: 8})
		s.must("systemctl", "kill", "--kill-whom=main", "-s", "USR2", "hc.service")
		eventually(t, "MainPID moves to the new master", func() bool {
			main := s.show("hc", "MainPID")
			return main != old && main != "0"
		})
		eventually(t, "old master gone", func() bool { return !s.alive(old) })
		eventually(t, "new master's status", func() bool { return strings.HasPrefix(s.show("hc", "StatusText"), "serving gen 5 ") })
		assertNoFailures(t, stop())
		if st := s.show("hc", "ActiveState"); st != "active" {
			t.Fatalf("ActiveState=%s after the upgrade", st)
		}
		assertServedBy(t, "tcp", addr, 5)
	})

	t.Run("broken upgrade", func(t *testing.T) {
		main := s.show("hc", "MainPID")
		good := exeOut + ".good"
		copyFile(t, exeOut, good)
		broken := exeOut + ".broken"
		if err := os.WriteFile(broken, []byte("#!/bin/sh\necho broken >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(broken, exeOut); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(good, exeOut)
		s.must("systemctl", "kill", "--kill-whom=main", "-s", "USR2", "hc.service")
		eventually(t, "the failed upgrade logged", func() bool {
			return strings.Contains(s.journal("hc"), "upgrade failed:")
		})
		if got := s.show("hc", "MainPID"); got != main {
			t.Errorf("MainPID %s, want the old master %s", got, main)
		}
		if st := s.show("hc", "ActiveState"); st != "active" {
			t.Fatalf("ActiveState=%s", st)
		}
		assertServedBy(t, "tcp", addr, 5)
	})

	// The control socket under systemd (root: /run/hotcluster), served by
	// the master that the upgrade started.
	t.Run("control", func(t *testing.T) {
		hc := filepath.Join(s.in, "hotcluster")
		var st control.Status
		if err := json.Unmarshal([]byte(s.must(hc, "status", "--name", "hc", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		if main := s.show("hc", "MainPID"); strconv.Itoa(st.PID) != main || st.Generation != 5 || len(st.Workers) != 2 {
			t.Fatalf("status: pid %d gen %d workers %d, want MainPID %s, gen 5, 2 workers", st.PID, st.Generation, len(st.Workers), main)
		}
		stop := load(t, loadgen.Config{Addr: addr, Clients: 8})
		if out := s.must(hc, "reload", "--name", "hc"); !strings.Contains(out, "generation 6 ready") {
			t.Errorf("reload: %s", out)
		}
		assertNoFailures(t, stop())
		eventually(t, "systemd told of gen 6", func() bool { return strings.HasPrefix(s.show("hc", "StatusText"), "serving gen 6 ") })
		assertServedBy(t, "tcp", addr, 6)
	})

	t.Run("stop drains", func(t *testing.T) {
		res := make(chan error, 1)
		go func() {
			body, err := get("tcp", addr, "/slow?ms=1500")
			if err == nil && !strings.HasPrefix(body, "hello ") {
				err = fmt.Errorf("answer %q", body)
			}
			res <- err
		}()
		eventually(t, "slow request running", func() bool { return strings.Contains(s.journal("hc"), "slow request for 1500 ms") })
		s.must("systemctl", "stop", "--no-block", "hc.service")
		if err := <-res; err != nil {
			t.Fatalf("in-flight request during stop: %v\n%s", err, s.journal("hc"))
		}
		eventually(t, "unit inactive", func() bool { return s.show("hc", "ActiveState") == "inactive" })
		if procs, _ := s.run("systemctl", "show", "hc", "-p", "ControlGroup", "--value"); strings.TrimSpace(procs) != "" {
			out, _ := s.run("systemd-cgls", "--no-pager", "-u", "hc.service")
			if strings.Contains(out, "hotcluster") || strings.Contains(out, "hello") {
				t.Errorf("processes left after stop:\n%s", out)
			}
		}
	})

	t.Run("socket activation", func(t *testing.T) {
		saddr := freeAddr(t)
		s.must(filepath.Join(s.in, "hotcluster"), "unit", "--name", "hcs", "--socket", "--exec", filepath.Join(s.in, "hotcluster"),
			"--out", "/run/systemd/system", "--", "--listen", "web="+saddr, "--workers", "2", "--", hello)
		s.must("systemctl", "daemon-reload")
		s.must("systemctl", "start", "hcs.socket")
		defer s.run("systemctl", "stop", "hcs.service", "hcs.socket")
		if st := s.show("hcs.service", "ActiveState"); st != "inactive" {
			t.Fatalf("service %s before the first connection", st)
		}
		body, err := get("tcp", saddr, "/")
		if err != nil || !strings.Contains(body, "gen=1") {
			t.Fatalf("first connection: %q, %v", body, err)
		}
		// The workers may answer just before the master's READY=1 reached
		// systemd.
		eventually(t, "service active after the first connection", func() bool { return s.show("hcs.service", "ActiveState") == "active" })
		if j := s.journal("hcs.service"); !strings.Contains(j, "listening on "+saddr+" as web (steered, ") {
			t.Errorf("the service did not use systemd's socket (steered):\n%s", j)
		}
	})
}
