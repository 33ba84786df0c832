package procstat

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
)

// envRole names the helper role a re-executed test binary plays. It is set
// only in processes started by the tests themselves.
const envRole = "HOTCLUSTER_TEST_ROLE"

var (
	roles     = map[string]func() int{}
	rolesUsed sync.Map
)

// registerRole adds a helper role; call it from an init function in the file
// whose tests use the role.
func registerRole(name string, fn func() int) {
	if _, dup := roles[name]; dup {
		panic("duplicate test role " + name)
	}
	roles[name] = fn
}

// useRole records that a test starts the role, for the check in TestMain.
func useRole(name string) string {
	if roles[name] == nil {
		panic("unknown test role " + name)
	}
	rolesUsed.Store(name, true)
	return name
}

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		fn := roles[role]
		if fn == nil {
			fmt.Fprintf(os.Stderr, "unknown %s=%q\n", envRole, role)
			os.Exit(2)
		}
		os.Exit(fn())
	}
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		var unused []string
		for name := range roles {
			if _, ok := rolesUsed.Load(name); !ok {
				unused = append(unused, name)
			}
		}
		sort.Strings(unused)
		if len(unused) > 0 {
			fmt.Fprintf(os.Stderr, "test roles never used: %v\n", unused)
			code = 1
		}
	}
	os.Exit(code)
}
