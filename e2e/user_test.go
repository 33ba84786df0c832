package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// As root, the master binds and the workers serve as nobody; they still
// reach their notify sockets (READY=1 works) and die with the master.
func TestWorkersAsAnotherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	// A directory every user can enter, holding a copy of this binary,
	// which both the master and the workers (as nobody) run.
	dir, err := os.MkdirTemp("", "hotcluster-user-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	bin := filepath.Join(dir, "hotcluster")
	copyFile(t, self, bin)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--user", "nobody", "--env", roleEnv+"=lib", "--ready", "notify",
		"--workers", "2", "--listen", "web=127.0.0.1:0", "--", bin)
	cmd.Env = append(os.Environ(), append(masterEnv(t), "TMPDIR="+tmp)...)
	m := startMasterCmd(t, cmd)
	addr := m.listenAddr("web")
	m.waitReady(1)
	for slot := 0; slot < 2; slot++ {
		workerPID(m, 1, slot) // a worker's line may follow the ready line
	}
	for _, l := range m.output() {
		if i := strings.Index(l, "CONTRACT "); i >= 0 {
			c := contract(l[i:])
			if c["uid"] != nobody.Uid || c["pdeathsig"] != "9" {
				t.Errorf("worker runs as uid %s with pdeathsig %s, want uid %s and 9: %s", c["uid"], c["pdeathsig"], nobody.Uid, l)
			}
		}
	}
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	m.reload(2)
	assertNoFailures(t, stop())
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestUserFlagErrors(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	for _, tc := range []struct{ arg, want string }{
		{"no-such-user-xyz", `--user "no-such-user-xyz": no such user`},
		{"nobody:no-such-group-xyz", `no such group "no-such-group-xyz"`},
	} {
		code, out := hotcluster(t, "run", "--user", tc.arg, "--", self)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("--user %s: exit %d, output:\n%s\nwant exit 2 and %q", tc.arg, code, out, tc.want)
		}
	}
}
