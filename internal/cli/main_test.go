package cli

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/hotcluster/hotcluster/internal/testroles"
)

// roleEnv makes the test binary play the hotcluster command, for the tests
// that need it in a process of its own (another working directory).
const roleEnv = testroles.Env

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "master" {
		os.Exit(Main(os.Args))
	}
	os.Exit(m.Run())
}

// hotcluster runs the test binary as the hotcluster command with args, in
// a process of its own (setting up a cli.App writes to the package's
// shared help flags, so parallel tests cannot run it in-process), and
// returns its exit code and combined output.
func hotcluster(t *testing.T, args ...string) (int, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Args = append([]string{"hotcluster"}, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=master", "XDG_RUNTIME_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	case err != nil:
		t.Fatal(err)
	}
	return 0, string(out)
}
