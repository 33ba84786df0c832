// Package testroles lets a test binary play the helper processes its tests
// start (STYLE.md section 6, after os/exec's registerHelperCommand): each
// role is registered by the file whose tests use it, TestMain plays the
// role the environment names, and a full run fails when a role went
// unused, because a dead helper hides a test that was lost.
//
//	var roles testroles.Set
//
//	func TestMain(m *testing.M) {
//		if code, ok := roles.Play(); ok {
//			os.Exit(code)
//		}
//		code := m.Run()
//		if code == 0 {
//			code = roles.CheckUsed()
//		}
//		os.Exit(code)
//	}
package testroles

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"sync"
	"testing"
)

// Env names the role a re-executed test binary plays. It is set only in
// processes started by the tests themselves.
const Env = "HOTCLUSTER_TEST_ROLE"

// Set holds a test binary's roles. Its zero value is ready; Register is for
// init functions, the rest is safe from any goroutine.
type Set struct {
	roles map[string]func() int
	used  sync.Map
}

// Register adds role name; it panics on a duplicate name.
func (s *Set) Register(name string, fn func() int) {
	if s.roles == nil {
		s.roles = make(map[string]func() int)
	}
	if _, dup := s.roles[name]; dup {
		panic("testroles: duplicate role " + name)
	}
	s.roles[name] = fn
}

// Use records that a test starts role name, and returns it; it panics on
// an unknown name.
func (s *Set) Use(name string) string {
	if s.roles[name] == nil {
		panic("testroles: unknown role " + name)
	}
	s.used.Store(name, true)
	return name
}

// Play runs the role Env names, if any: ok reports that this process was
// a helper, code is its exit code (2 for an unknown role).
func (s *Set) Play() (code int, ok bool) {
	role := os.Getenv(Env)
	if role == "" {
		return 0, false
	}
	fn := s.roles[role]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "testroles: unknown %s=%q\n", Env, role)
		return 2, true
	}
	return fn(), true
}

// CheckUsed returns 1, after saying which, when a full run (no -run, no
// -skip, not -short) left a role unused; else 0.
func (s *Set) CheckUsed() int {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return 0
		}
	}
	if testing.Short() {
		return 0
	}
	var unused []string
	for name := range s.roles {
		if _, ok := s.used.Load(name); !ok {
			unused = append(unused, name)
		}
	}
	if len(unused) == 0 {
		return 0
	}
	sort.Strings(unused)
	fmt.Fprintf(os.Stderr, "test roles never used: %v\n", unused)
	return 1
}

// RequireToolsEnv, set to 1 (as .ci/run does), turns a missing tool into a
// failure of the test that needs it rather than a skip: CI installs every
// tool, and a skip there would hide a test that never ran.
const RequireToolsEnv = "HOTCLUSTER_TEST_REQUIRE_TOOLS"

// Tool returns the path of the program name, for a test that runs it. A
// program that is not installed skips the test, naming it, except under
// RequireToolsEnv, where it fails the test.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf("%s is not installed, and %s=1 requires it (.ci/run installs it): %v", name, RequireToolsEnv, err)
	}
	t.Skipf("%s is not installed here (.ci/run installs it): %v", name, err)
	return ""
}

// Need is Tool for what a test needs besides a program on $PATH (a
// library, a package's files): err, when not nil, says what is missing,
// and the test skips, or fails under RequireToolsEnv.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf("%s is missing, and %s=1 requires it (.ci/run installs it): %v", what, RequireToolsEnv, err)
	}
	t.Skipf("%s is missing here (.ci/run installs it): %v", what, err)
}
