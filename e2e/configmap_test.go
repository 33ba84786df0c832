package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/e2e/internal/testkit"
	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// configMap is a directory laid out as the kubelet's atomic writer
// (kubernetes pkg/volume/util/atomic_writer.go) lays out a mounted
// ConfigMap:
//
//	dir/..2026_12_02_00_45_44.123456789/KEY   the files of one version
//	dir/..data -> ..2026_12_02_00_45_44.123456789
//	dir/KEY -> ..data/KEY
//
// An update writes a new timestamped directory, points a new symbolic link
// ..data_tmp at it, renames that over ..data (the one atomic step), and
// removes the old directory. The user-visible KEY links never change.
type configMap struct {
	t   *testing.T
	dir string
	ts  string // the current timestamped directory's name
}

// newConfigMap makes the layout in a new directory with the files given.
func newConfigMap(t *testing.T, files map[string]string) *configMap {
	t.Helper()
	c := &configMap{t: t, dir: t.TempDir()}
	c.update(files)
	return c
}

// update publishes files as the next version, in the atomic writer's order.
func (c *configMap) update(files map[string]string) {
	c.t.Helper()
	must := func(err error) {
		c.t.Helper()
		if err != nil {
			c.t.Fatal(err)
		}
	}
	// (5) the timestamped directory, as newTimestampDir names and opens it.
	ts, err := os.MkdirTemp(c.dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	must(err)
	must(os.Chmod(ts, 0o755))
	// (6) the payload.
	for k, v := range files {
		must(os.WriteFile(filepath.Join(ts, k), []byte(v), 0o644))
	}
	// (7) ..data_tmp -> the new directory, (8) renamed over ..data.
	tmp := filepath.Join(c.dir, "..data_tmp")
	must(os.Symlink(filepath.Base(ts), tmp))
	must(os.Rename(tmp, filepath.Join(c.dir, "..data")))
	// (9) the user-visible links, made once.
	for k := range files {
		link := filepath.Join(c.dir, k)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			must(os.Symlink(filepath.Join("..data", k), link))
		}
	}
	// (11) the previous version goes.
	if c.ts != "" {
		must(os.RemoveAll(filepath.Join(c.dir, c.ts)))
	}
	c.ts = filepath.Base(ts)
}

// TestConfigMapSwapReloads watches a mounted ConfigMap, its directory or
// the KEY link in it: every swap of ..data reloads, the new generation reads
// the new value through the unchanged KEY link, and a client sending all
// along sees no failure.
func TestConfigMapSwapReloads(t *testing.T) {
	t.Parallel()
	for _, watchKey := range []bool{false, true} {
		name := "directory"
		if watchKey {
			name = "key"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cm := newConfigMap(t, map[string]string{"message": "one", "other": "x"})
			key := filepath.Join(cm.dir, "message")
			watched := cm.dir
			if watchKey {
				watched = key
			}
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			// devapp serves the content of the file named by its argument,
			// read when it starts.
			m := startCommand(t, []string{"--env", roleEnv + "=devapp", "--workers", "2",
				"--listen", "web=127.0.0.1:0", "--watch", watched}, self, key)
			addr := m.listenAddr("web")
			m.waitReady(1)
			if got := servedMsg(t, addr); got != "one" {
				t.Fatalf("served %q, want one", got)
			}
			stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
			// More than one swap: the watch must survive the removal of
			// the directory it saw first.
			for i, v := range []string{"two", "three", "four"} {
				gen := i + 2
				cm.update(map[string]string{"message": v, "other": "x"})
				m.WaitEvent(0, fmt.Sprintf("gen %d ready", gen), testkit.Is("reload-done", uint64(gen)))
				if got := servedMsg(t, addr); got != v {
					t.Fatalf("after update %d served %q, want %q", i+1, got, v)
				}
			}
			assertNoFailures(t, stop())
		})
	}
}
