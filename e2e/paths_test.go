package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/child"
)

// The tests of this file play another user, nobody, against a root master:
// every path the master creates, chowns or removes as root must be safe
// against a name that user planted or swapped (see package
// internal/safedir).

// attackerDir returns a directory that root owns and nobody may enter
// (0755), holding a copy of the test binary that both the master and
// nobody's processes can run. It skips the test where another user cannot
// be played.
func attackerDir(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = attackerTop(t)
	self, _ := os.Executable()
	bin = filepath.Join(dir, "hotcluster")
	copyFile(t, self, bin)
	return dir, bin
}

// attackerTop is attackerDir without the binary.
func attackerTop(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to play another user (nobody) against a root master; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	lookupNobody(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux), to run the attacker as nobody, is not installed")
	}
	dir, err := os.MkdirTemp("", "hotcluster-paths-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asNobody runs argv as nobody, as an attacker would, and returns its
// combined output and error.
func asNobody(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups"}, argv...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustAsNobody is asNobody for what must succeed (the plants).
func mustAsNobody(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := asNobody(t, argv...); err != nil {
		t.Fatalf("as nobody: %s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// rootFile makes a file of root's, mode 0600, holding content: what an
// attacker would like the master to chown, chmod or remove for it.
func rootFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// assertRootFile checks that path is still root's file, mode 0600, with
// content.
func assertRootFile(t *testing.T, path, content string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("root's file: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	b, _ := os.ReadFile(path)
	if st.Uid != 0 || st.Gid != 0 || fi.Mode() != 0o600 || string(b) != content {
		t.Errorf("root's file %s is now %v of %d:%d holding %q, want 0600 of 0:0 holding %q", path, fi.Mode(), st.Uid, st.Gid, b, content)
	}
}

// owner returns the owner and mode of path, not following a symlink.
func owner(t *testing.T, path string) (uint32, fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid, fi.Mode()
}

func init() { roles.Register("notify-attack", roleNotifyAttack) }

// roleNotifyAttack is a worker of another user (--user nobody) that, in
// generation 1, goes after the master through its notify directory: it
// tries to remove its own notify socket and swap in a symlink to a root
// file (ATTACK_TARGET), which a master that chowns by path would give it,
// and to plant the names the next generations' sockets will get, which
// would make every later reload fail. It reports each outcome on one line,
// then serves like the lib role.
func roleNotifyAttack() int {
	sock, target := os.Getenv("NOTIFY_SOCKET"), os.Getenv("ATTACK_TARGET")
	if child.Generation() == 1 {
		dir, name := filepath.Split(sock)
		var gen, slot, seq int
		fmt.Sscanf(name, "g%d-w%d-%d", &gen, &slot, &seq)
		outcome := func(err error) string {
			switch {
			case err == nil:
				return "done"
			case errors.Is(err, fs.ErrPermission):
				return "EACCES"
			}
			return strings.ReplaceAll(err.Error(), " ", "_")
		}
		line := fmt.Sprintf("ATTACK uid=%d", os.Getuid())
		line += " remove=" + outcome(os.Remove(sock))
		swap := filepath.Join(dir, "swap")
		line += " symlink=" + outcome(os.Symlink(target, swap))
		line += " swap=" + outcome(os.Rename(swap, sock))
		planted, last := 0, error(nil)
		for g := gen + 1; g <= gen+2; g++ {
			for w := 0; w < 2; w++ {
				for q := seq + 1; q <= seq+8; q++ {
					if err := os.Symlink(target, filepath.Join(dir, fmt.Sprintf("g%d-w%d-%d", g, w, q))); err != nil {
						last = err
					} else {
						planted++
					}
				}
			}
		}
		line += fmt.Sprintf(" planted=%d plant=%s", planted, outcome(last))
		fmt.Println(line)
	}
	return roleLibServe()
}

// A worker of another user can neither swap its notify socket for a
// symlink to a root file (which the master would chown to it) nor plant
// the names of later sockets (which would fail every reload): the notify
// directory is root's, 0711, and each socket is the worker's, 0600.
func TestNotifyDirectoryResistsTheWorkersUser(t *testing.T) {
	t.Parallel()
	dir, bin := attackerDir(t)
	nobody := lookupNobody(t)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	rootFile(t, secret, "root's")
	cmd := exec.Command(bin, "run", "--user", "nobody", "--env", roleEnv+"=notify-attack", "--env", "ATTACK_TARGET="+secret,
		"--ready", "notify", "--workers", "1", "--listen", "web=127.0.0.1:0", "--", bin)
	cmd.Env = append(os.Environ(), append(masterEnv(t), "TMPDIR="+tmp)...)
	m := startMasterCmd(t, cmd)
	sm, _ := m.waitLine(0, `(ATTACK .*)`)
	got := contract(sm[1])
	want := map[string]string{"uid": strconv.Itoa(int(nobody)), "remove": "EACCES", "symlink": "EACCES", "planted": "0", "plant": "EACCES"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attack: %s=%s, want %s (%s)", k, got[k], v, sm[1])
		}
	}
	m.waitReady(1)
	assertRootFile(t, secret, "root's")
	socks, _ := filepath.Glob(filepath.Join(tmp, "hotcluster-*", "g1-w0-*"))
	if len(socks) != 1 {
		t.Fatalf("notify sockets of gen 1: %v", socks)
	}
	if uid, mode := owner(t, filepath.Dir(socks[0])); uid != 0 || mode != fs.ModeDir|0o711 {
		t.Errorf("notify directory: %v of uid %d, want 0711 of root", mode, uid)
	}
	if uid, mode := owner(t, socks[0]); uid != nobody || mode != fs.ModeSocket|0o600 {
		t.Errorf("notify socket: %v of uid %d, want 0600 of nobody", mode, uid)
	}
	// The next generation gets its sockets.
	m.signal(syscall.SIGHUP)
	if sm, _ := m.waitLine(0, `gen 2 ready in|reload failed.*`); !strings.HasPrefix(sm[0], "gen 2 ready in") {
		t.Fatalf("reload after the attack: %s", sm[0])
	}
	m.waitLine(0, `gen 1 drained`)
	assertRootFile(t, secret, "root's")
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func init() { roles.Register("plant-socket", rolePlantSocket) }

// rolePlantSocket binds a unix socket at $PLANT and exits, leaving the
// file behind: a stale socket of whoever ran it.
func rolePlantSocket() int {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: os.Getenv("PLANT"), Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	return 0
}

// plantSocket leaves a stale socket of nobody's at path.
func plantSocket(t *testing.T, bin, path string) {
	t.Helper()
	mustAsNobody(t, "env", roleEnv+"="+roles.Use("plant-socket"), "PLANT="+path, bin)
}

// mkdirMode makes dir with exactly mode (os.ModeSticky for the sticky bit).
func mkdirMode(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// In a directory others may add names to (sticky, as /tmp), a unix
// --listen path where another user put a symlink to a root file, a file
// or a stale socket of its own is refused, and nothing there is touched;
// a directory that anyone may write without the sticky bit is refused
// outright. A stale socket of root's own is still replaced.
func TestUnixListenRefusesNamesPlantedByAnotherUser(t *testing.T) {
	t.Parallel()
	dir, bin := attackerDir(t)
	nobody := lookupNobody(t)
	share := mkdirMode(t, filepath.Join(dir, "share"), os.ModeSticky|0o777)
	secret := filepath.Join(dir, "secret")
	rootFile(t, secret, "root's")
	link, file, sock := filepath.Join(share, "link.sock"), filepath.Join(share, "file.sock"), filepath.Join(share, "sock.sock")
	mustAsNobody(t, "ln", "-s", secret, link)
	mustAsNobody(t, "sh", "-c", "echo planted > "+file)
	plantSocket(t, bin, sock)
	self, _ := os.Executable()
	for path, what := range map[string]string{link: "a symlink", file: "a regular file", sock: "a socket"} {
		code, out := hotcluster(t, "run", "--listen", "unix://"+path, "--", self)
		want := fmt.Sprintf("listen unix://%s: %s: %s of uid %d (nobody) is in the way; only a stale socket of this user's (uid 0) is replaced", path, path, what, nobody)
		if code != 2 || !strings.Contains(out, want) {
			t.Errorf("--listen over %s of nobody's: exit %d, output:\n%s\nwant exit 2 and %q", what, code, out, want)
		}
		if uid, _ := owner(t, path); uid != nobody {
			t.Errorf("%s of nobody's at %s now belongs to uid %d", what, path, uid)
		}
	}
	assertRootFile(t, secret, "root's")

	open := mkdirMode(t, filepath.Join(dir, "open"), 0o777)
	code, out := hotcluster(t, "run", "--listen", "unix://"+open+"/app.sock", "--", self)
	if want := open + ": directory is writable by others (mode 0777) without the sticky bit"; code != 2 || !strings.Contains(out, want) {
		t.Errorf("--listen in a 0777 directory: exit %d, output:\n%s\nwant exit 2 and %q", code, out, want)
	}

	own := filepath.Join(share, "own.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: own, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	m := startMaster(t, "lib", "--workers", "1", "--listen", "unix://"+own)
	m.waitReady(1)
	if _, err := get("unix", own, "/"); err != nil {
		t.Fatalf("over root's own stale socket: %v", err)
	}
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, err := os.Lstat(own); !os.IsNotExist(err) {
		t.Errorf("socket file after the stop: %v", err)
	}
}

// A control socket is made only where no other user can change the way to
// it: not in a directory anyone may write, where nobody put a symlink to a
// root file or a file at the socket's name, and not below a directory of
// nobody's, where the control directory root would make could be swapped.
func TestControlRefusesDirectoriesAnotherUserCanChange(t *testing.T) {
	t.Parallel()
	dir := attackerTop(t)
	nobody := lookupNobody(t)
	self, _ := os.Executable()
	secret := filepath.Join(dir, "secret")
	rootFile(t, secret, "root's")
	open := mkdirMode(t, filepath.Join(dir, "open"), 0o777)
	share := mkdirMode(t, filepath.Join(dir, "share"), os.ModeSticky|0o777)
	mustAsNobody(t, "ln", "-s", secret, filepath.Join(open, "a.sock"))
	mustAsNobody(t, "sh", "-c", "echo planted > "+filepath.Join(open, "b.sock"))
	atk := filepath.Join(share, "atk")
	mustAsNobody(t, "mkdir", atk)
	mine := filepath.Join(share, "mine")
	mustAsNobody(t, "mkdir", "-m", "700", mine)
	mustAsNobody(t, "ln", "-s", secret, filepath.Join(mine, "c.sock"))
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(open, "a.sock"), open + ": directory is writable by others (mode 0777) without the sticky bit"},
		{filepath.Join(open, "b.sock"), open + ": directory is writable by others (mode 0777) without the sticky bit"},
		{filepath.Join(atk, "ctl", "x.sock"), atk + ": directory belongs to uid 65534 (nobody), who could replace any name in it"},
		{filepath.Join(mine, "c.sock"), mine + ": directory belongs to uid 65534 (nobody)"},
	} {
		code, out := hotcluster(t, "run", "--control", tc.path, "--", self)
		if code != 2 || !strings.Contains(out, "control directory: "+tc.want) {
			t.Errorf("--control %s: exit %d, output:\n%s\nwant exit 2 and %q", tc.path, code, out, tc.want)
		}
	}
	for _, p := range []string{filepath.Join(open, "a.sock"), filepath.Join(open, "b.sock"), filepath.Join(mine, "c.sock")} {
		if uid, _ := owner(t, p); uid != nobody {
			t.Errorf("nobody's %s now belongs to uid %d", p, uid)
		}
	}
	if _, err := os.Lstat(filepath.Join(atk, "ctl")); !os.IsNotExist(err) {
		t.Errorf("root made a directory in nobody's: %v", err)
	}
	assertRootFile(t, secret, "root's")
}

// readPID returns the PID the pid file holds, or -1.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// As root, a pid file goes only in a directory no other user can change:
// not one anyone may write (sticky or not), not one of nobody's.
func TestPidfileRefusedWhereAnotherUserCanWrite(t *testing.T) {
	t.Parallel()
	dir := attackerTop(t)
	self, _ := os.Executable()
	open := mkdirMode(t, filepath.Join(dir, "open"), 0o777)
	share := mkdirMode(t, filepath.Join(dir, "share"), os.ModeSticky|0o777)
	theirs := filepath.Join(share, "theirs")
	mustAsNobody(t, "mkdir", "-m", "755", theirs)
	secret := filepath.Join(dir, "secret")
	rootFile(t, secret, "root's")
	mustAsNobody(t, "ln", "-s", secret, filepath.Join(open, "master.pid"))
	for _, tc := range []struct{ dir, want string }{
		{open, "directory is writable by others (mode 0777) without the sticky bit"},
		{share, "directory is writable by others (mode 1777); only one that no one but its owner can write will do here"},
		{theirs, "directory belongs to uid 65534 (nobody), who could replace any name in it"},
	} {
		path := filepath.Join(tc.dir, "master.pid")
		code, out := hotcluster(t, "run", "--pidfile", path, "--", self)
		want := "pid file " + path + ": " + tc.dir + ": " + tc.want
		if code != 2 || !strings.Contains(out, want) {
			t.Errorf("--pidfile %s: exit %d, output:\n%s\nwant exit 2 and %q", path, code, out, want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(open, "master.pid")); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("nobody's symlink is gone or replaced: %v", err)
	}
	for _, d := range []string{share, theirs} {
		if _, err := os.Lstat(filepath.Join(d, "master.pid")); !os.IsNotExist(err) {
			t.Errorf("a pid file was written in %s: %v", d, err)
		}
	}
	assertRootFile(t, secret, "root's")
}

// A master that stops leaves no pid file behind, unless the file no longer
// names it.
func TestPidfileRemovedAtStopOnlyIfItNamesUs(t *testing.T) {
	t.Parallel()
	pidfile := filepath.Join(t.TempDir(), "master.pid")
	m := startMaster(t, "lib", "--workers", "1", "--pidfile", pidfile)
	m.waitLine(0, `serving \(master pid`)
	if got := readPID(pidfile); got != m.pid {
		t.Fatalf("pid file holds %d, want %d", got, m.pid)
	}
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, err := os.Lstat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pid file after a clean stop: %v", err)
	}

	m = startMaster(t, "lib", "--workers", "1", "--pidfile", pidfile)
	m.waitLine(0, `serving \(master pid`)
	// Another tool's PID now, as if a second program shared the name.
	if err := os.WriteFile(pidfile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if got := readPID(pidfile); got != 1 {
		t.Errorf("a pid file rewritten by someone else holds %d after the stop, want it left with 1", got)
	}
}

// After an upgrade the pid file names the new master, the old one did not
// remove it on its way out, and the new one removes it when it stops.
func TestPidfileAcrossUpgrade(t *testing.T) {
	t.Parallel()
	pidfile := filepath.Join(t.TempDir(), "master.pid")
	m, _ := startCopiedMaster(t, "lib", "--workers", "1", "--listen", "web=127.0.0.1:0", "--pidfile", pidfile)
	m.waitLine(0, `serving \(master pid`)
	pid, _ := m.upgrade(m.pid, 0)
	if got := readPID(pidfile); got != pid {
		t.Fatalf("pid file holds %d once the old master %d exited, want the new master %d", got, m.pid, pid)
	}
	m.stopAt(pid)
	if _, err := os.Lstat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pid file after the new master stopped: %v", err)
	}
}

// In development mode with --user, the build (run as root) writes each
// output by path in a directory of root's, 0711: the workers' user runs
// the outputs but can neither list the directory, nor add a name (such as
// the next output's, as a symlink to a root file the next build would
// write through), nor replace or change an output.
func TestDevOutputsOutOfTheWorkersUsersReach(t *testing.T) {
	t.Parallel()
	dir, bin := attackerDir(t)
	app := mkdirMode(t, filepath.Join(dir, "app"), 0o755)
	tmp := mkdirMode(t, filepath.Join(dir, "tmp"), 0o755)
	secret := filepath.Join(dir, "secret")
	rootFile(t, secret, "root's")
	msg := filepath.Join(app, "msg.txt")
	writeAtomic(t, msg, "one")
	cmd := exec.Command(bin, "run", "--user", "nobody", "--env", roleEnv+"=devapp", "--workers", "1",
		"--listen", "web=127.0.0.1:0", "--watch", app, "--dir", app, "--build", "cp msg.txt {out}", "--", bin, "{out}")
	cmd.Env = append(os.Environ(), append(masterEnv(t), "TMPDIR="+tmp)...)
	m := startMasterCmd(t, cmd)
	addr := m.listenAddr("web")
	m.waitReady(1)
	if got := servedMsg(t, addr); got != "one" {
		t.Fatalf("served %q", got)
	}
	outs, _ := filepath.Glob(filepath.Join(tmp, "hotcluster-build-*", "out-1"))
	if len(outs) != 1 {
		t.Fatalf("build outputs: %v", outs)
	}
	out := outs[0]
	outDir := filepath.Dir(out)
	if uid, mode := owner(t, outDir); uid != 0 || mode != fs.ModeDir|0o711 {
		t.Errorf("output directory: %v of uid %d, want 0711 of root", mode, uid)
	}
	next := filepath.Join(outDir, "out-2")
	for _, argv := range [][]string{
		{"ls", outDir},
		{"sh", "-c", "echo planted > " + filepath.Join(outDir, "planted")},
		{"ln", "-s", secret, next},
		{"sh", "-c", "echo evil > " + out},
		{"rm", "-f", out},
		{"mv", out, out + ".moved"},
	} {
		if o, err := asNobody(t, argv...); err == nil || !strings.Contains(o, "ermission denied") {
			t.Errorf("as nobody: %s: %v: %s; want permission denied", strings.Join(argv, " "), err, o)
		}
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "one" {
		t.Errorf("build output now %q (%v)", b, err)
	}
	if _, err := os.Lstat(next); !os.IsNotExist(err) {
		t.Fatalf("nobody planted the next output: %v", err)
	}
	writeAtomic(t, msg, "two")
	m.waitReady(2)
	if got := servedMsg(t, addr); got != "two" {
		t.Errorf("served %q after the edit, want two", got)
	}
	assertRootFile(t, secret, "root's")
}

// A hotcluster.toml that another user left in the directory root runs
// hotcluster in (a sticky one, as /tmp) is not read: it would name the
// commands root runs.
func TestConfigFilePlantedByAnotherUserIsNotRead(t *testing.T) {
	t.Parallel()
	dir := attackerTop(t)
	share := mkdirMode(t, filepath.Join(dir, "share"), os.ModeSticky|0o777)
	pwned := filepath.Join(dir, "pwned")
	mustAsNobody(t, "sh", "-c", `printf 'command = ["/bin/sh", "-c", "touch `+pwned+`"]\n' > `+filepath.Join(share, "hotcluster.toml"))
	self, _ := os.Executable()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "run", "--workers", "1")
	cmd.Args[0] = "hotcluster"
	cmd.Dir = share
	cmd.Env = append(os.Environ(), roleEnv+"=master", "XDG_RUNTIME_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	want := "config file: " + share + ": directory is writable by others (mode 1777)"
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), want) {
		t.Errorf("run beside nobody's hotcluster.toml: %v, output:\n%s\nwant exit 2 and %q", err, out, want)
	}
	if _, err := os.Lstat(pwned); !os.IsNotExist(err) {
		t.Errorf("root ran nobody's command: %v", err)
	}
}
