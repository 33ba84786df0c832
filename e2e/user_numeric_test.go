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

// unknownID returns a uid and gid that neither /etc/passwd nor /etc/group
// knows, as a container image that runs as a bare number has.
func unknownID(t *testing.T) int {
	t.Helper()
	for id := 54321; id < 54321+1000; id++ {
		s := strconv.Itoa(id)
		_, uerr := user.LookupId(s)
		_, gerr := user.LookupGroupId(s)
		if uerr != nil && gerr != nil {
			return id
		}
	}
	t.Fatal("no free uid between 54321 and 55320")
	return 0
}

// As root, --user UID:GID with a uid and a gid that the user database does
// not know runs the workers as exactly those, without supplementary groups
// (a distroless or scratch image without a line for its user); a bare UID
// without a group is refused, saying what to give.
func TestWorkersAsABareUID(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	id := unknownID(t)
	ids := strconv.Itoa(id)
	self, _ := os.Executable()
	code, out := hotcluster(t, "run", "--user", ids, "--", self)
	if want := `--user "` + ids + `": uid ` + ids + ` has no entry in the user database`; code != 2 || !strings.Contains(out, want) {
		t.Errorf("--user %s: exit %d, output:\n%s\nwant exit 2 and %q", ids, code, out, want)
	}

	dir, err := os.MkdirTemp("", "hotcluster-uid-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hotcluster")
	copyFile(t, self, bin)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--user", ids+":"+ids, "--env", roleEnv+"=lib", "--ready", "notify",
		"--workers", "2", "--listen", "web=127.0.0.1:0", "--", bin)
	cmd.Env = append(os.Environ(), append(masterEnv(t), "TMPDIR="+tmp)...)
	m := startMasterCmd(t, cmd)
	addr := m.listenAddr("web")
	m.waitReady(1)
	for slot := 0; slot < 2; slot++ {
		workerPID(m, 1, slot) // a worker's line may follow the ready line
	}
	seen := 0
	for _, l := range m.output() {
		if i := strings.Index(l, "CONTRACT "); i >= 0 {
			seen++
			if c := contract(l[i:]); c["uid"] != ids || c["gid"] != ids {
				t.Errorf("worker runs as uid %s gid %s, want %d:%d: %s", c["uid"], c["gid"], id, id, l)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no worker reported its contract")
	}
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	m.reload(2)
	assertNoFailures(t, stop())
	m.signal(syscall.SIGTERM)
	if code := m.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
