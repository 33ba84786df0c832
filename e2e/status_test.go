package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/testroles"
)

// poke makes one request with a short deadline and ignores the answer:
// the worker that takes it may die of it.
func poke(addr string) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
	c.Read(make([]byte, 1))
}

// Status says what each worker's own life was: a new generation's workers
// have no exit (the drained generation's exits are not theirs), a slot
// whose worker dies again and again shows that dead worker as a crash
// loop, with its exit and the respawn to come, and the worker that
// replaces it counts the restarts before it and says how its predecessor
// ended.
func TestStatusPerWorkerTruth(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "crash-after-ready-gen2", "--workers", "2", "--listen", "web=127.0.0.1:0", "--max-restarts", "0")
	addr := m.listenAddr("web")
	mustCtl(t, m.env, "reload")
	m.waitLine(0, `gen 1 drained`)

	st := statusOf(t, m.env)
	if len(st.Workers) != 2 || len(st.Restarting) != 0 {
		t.Fatalf("after the reload: %+v", st)
	}
	for _, w := range st.Workers {
		if w.Generation != 2 || w.Restarts != 0 || w.PreviousExit != "" {
			t.Errorf("gen 2 worker %+v: want no restart and no previous exit", w)
		}
	}
	text := mustCtl(t, m.env, "status")
	if rows := workerRows(t, text); len(rows) != 2 || strings.Contains(text, "exit status") || strings.Contains(text, "killed by") {
		t.Errorf("a fresh generation shows exits:\n%s", text)
	}

	// Each request kills the gen 2 worker that takes it, until a slot's
	// back-off has grown past 1.6s: 5 crashes in a row.
	var loop *control.RestartingSlot
	for i := 0; i < 2000 && loop == nil; i++ {
		poke(addr)
		for _, r := range statusOf(t, m.env).Restarting {
			if r.CrashLoop {
				loop = &r
			}
		}
	}
	if loop == nil {
		t.Fatal("no crash loop after 2000 requests")
	}
	if loop.Generation != 2 || loop.Exit != "exit status 1" || loop.Crashes < 5 || loop.Restarts < 4 || alive(loop.PID) {
		t.Errorf("crash loop %+v: want gen 2, exit status 1, 5 crashes or more, the dead worker's pid", loop)
	}
	text = mustCtl(t, m.env, "status")
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^%d +2 +%d +crash loop +- +\d+ +exit status 1 \(\d+ crashes in a row\), \S+ ago; respawn in \S+ +- +-$`, loop.Slot, loop.PID))
	if !row.MatchString(text) {
		t.Errorf("no crash loop row for slot %d, pid %d:\n%s", loop.Slot, loop.PID, text)
	}

	// The respawned worker: alive, with the restarts before it.
	var w control.Worker
	eventually(t, "slot respawned", func() bool {
		for _, x := range statusOf(t, m.env).Workers {
			if x.Slot == loop.Slot && x.PID != loop.PID {
				w = x
				return true
			}
		}
		return false
	})
	if w.Restarts != loop.Restarts+1 || w.PreviousExit != "exit status 1" || w.PreviousExitAt == nil {
		t.Errorf("respawned worker %+v: want %d restarts and previous exit status 1", w, loop.Restarts+1)
	}
	text = mustCtl(t, m.env, "status")
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^%d +2 +%d +ready +\S+ +%d +before: exit status 1, \S+ ago`, w.Slot, w.PID, w.Restarts)).MatchString(text) {
		t.Errorf("no row for the respawned worker %d:\n%s", w.PID, text)
	}
}

// workerRows are the rows of status's worker table.
func workerRows(t *testing.T, text string) []string {
	t.Helper()
	_, table, ok := strings.Cut(text, "\nSLOT  GEN  PID")
	if !ok {
		t.Fatalf("no worker table:\n%s", text)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	return lines[1:]
}

// A reload to a command that fails: status names the command that still
// serves, and the failed one as the next generation's.
func TestStatusCommandAfterFailedReload(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	dir := t.TempDir()
	file := filepath.Join(dir, "hotcluster.toml")
	write := func(arg string) {
		writeAtomic(t, file, fmt.Sprintf("command = [%q, %q]\n", self, arg))
	}
	write("first")
	env := []string{"XDG_RUNTIME_DIR=" + dir}
	m := startCommandEnv(t, env, []string{"--config", file, "--env", roleEnv + "=crash-from-gen2", "--workers", "1", "--listen", "web=127.0.0.1:0"})
	m.waitLine(0, `serving \(master pid`)
	write("second")
	if code, _, errs := ctl(t, env, "reload"); code != 1 || !strings.Contains(errs, "reload failed") {
		t.Fatalf("reload: exit %d: %s", code, errs)
	}
	st := statusOf(t, env)
	if want := []string{self, "first"}; st.Generation != 1 || strings.Join(st.Command, " ") != strings.Join(want, " ") {
		t.Errorf("command %q of gen %d, want %q", st.Command, st.Generation, want)
	}
	if want := self + " second"; strings.Join(st.NextCommand, " ") != want {
		t.Errorf("next command %q, want %q", st.NextCommand, want)
	}
	text := mustCtl(t, env, "status")
	for _, want := range []string{"\ncommand: " + self + " first\n", "\nnext command: " + self + " second (generation 2 failed with it;"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
}

// As root in a login session (a runtime directory of its own, empty),
// status without --name finds the instance a root service runs, the way
// ls does; a name that does not run is answered with the names that do.
func TestStatusFindsTheRootService(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the search of other users' and services' directories is root's")
	}
	tmp := t.TempDir()
	sock := filepath.Join(tmp, fmt.Sprintf("hotcluster-%d", os.Geteuid()), "svc.sock")
	self, _ := os.Executable()
	// As systemd runs it: no XDG_RUNTIME_DIR; its socket where a service's
	// goes ($TMPDIR/hotcluster-UID here, to stay out of /run).
	cmd := exec.Command(self, "run", "--name", "svc", "--control", sock, "--env", roleEnv+"=lib", "--workers", "1", "--listen", "127.0.0.1:0", "--", self)
	cmd.Args[0] = "hotcluster"
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") && !strings.HasPrefix(kv, "TMPDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, roleEnv+"=master", "TMPDIR="+tmp, "GORACE=atexit_sleep_ms=0")
	m := startMasterCmd(t, cmd)
	m.waitLine(0, `serving \(master pid`)

	session := []string{"XDG_RUNTIME_DIR=" + t.TempDir(), "TMPDIR=" + tmp}
	if st := statusOf(t, session); st.PID != m.pid || st.Name != "svc" {
		t.Errorf("status without --name: %+v, want svc, master %d", st, m.pid)
	}
	code, _, errs := ctl(t, session, "status", "--name", "shop")
	if want := "no master is running as shop; running: svc at " + sock; code != 1 || !strings.Contains(errs, want) {
		t.Errorf("status --name shop: exit %d: %s; want 1 and %q", code, errs, want)
	}
}

// On a terminal, states are in colour (none with NO_COLOR, none in a
// pipe), and the columns still line up.
func TestStatusColours(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "lib", "--workers", "2", "--listen", "web=127.0.0.1:0")
	run := func(extra ...string) string {
		self, _ := os.Executable()
		cmd := exec.Command(self, "status")
		cmd.Args[0] = "hotcluster"
		cmd.Env = append(append(append(os.Environ(), roleEnv+"=master"), m.env...), extra...)
		return testroles.OnTerminal(t, 120, cmd)
	}
	coloured := run()
	if !strings.Contains(coloured, "\x1b[32mready\x1b[0m") || !strings.Contains(coloured, "generation 1 \x1b[32mserving\x1b[0m") {
		t.Errorf("no green ready or serving on a terminal:\n%q", coloured)
	}
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(coloured, "")
	_, table, _ := strings.Cut(plain, "\nSLOT")
	lines := strings.Split("SLOT"+strings.TrimRight(table, "\n"), "\n")
	col := strings.Index(lines[0], "UPTIME")
	for _, r := range lines[1:] {
		if len(r) <= col || r[col] == ' ' || r[col-1] != ' ' {
			t.Errorf("row %q does not line up with the header %q", r, lines[0])
		}
	}
	if out := run("NO_COLOR=1"); strings.Contains(out, "\x1b[") {
		t.Errorf("colours with NO_COLOR:\n%q", out)
	}
	if out := mustCtl(t, m.env, "status"); strings.Contains(out, "\x1b[") {
		t.Errorf("colours in a pipe:\n%q", out)
	}
}
