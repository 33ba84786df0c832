package child

import (
	"os"
	"testing"

	"github.com/hotcluster/hotcluster/child/internal/protocol"
	"github.com/hotcluster/hotcluster/child/internal/testroles"
)

// envRole names the helper role a re-executed test binary plays.
const envRole = testroles.Env

var roles testroles.Set

// registerRole adds a helper role; call it from an init function in the file
// whose tests use the role.
func registerRole(name string, fn func() int) { roles.Register(name, fn) }

// useRole records that a test starts the role, for the check in TestMain.
func useRole(name string) string { return roles.Use(name) }

func TestMain(m *testing.M) {
	if code, ok := roles.Play(); ok {
		os.Exit(code)
	}
	// The tests in this process play a program run by hand, even when the
	// test binary itself runs under a supervisor.
	for _, k := range []string{protocol.EnvListenFds, protocol.EnvListenFdNames, protocol.EnvListenPID,
		protocol.EnvNotifySocket, protocol.EnvGeneration, protocol.EnvWorkerID, protocol.EnvWorkers} {
		os.Unsetenv(k)
	}
	code := m.Run()
	if code == 0 {
		code = roles.CheckUsed()
	}
	os.Exit(code)
}
