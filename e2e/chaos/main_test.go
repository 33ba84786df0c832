//go:build chaos

package chaos

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// roleEnv selects a worker role in a process the tests started (through
// hotcluster); unset, the binary runs the tests.
const roleEnv = "CHAOS_ROLE"

// Knobs. Each flag's default comes from the environment variable named in
// its usage, so that CI can set either.
var (
	flagKillFor      = flag.Duration("chaos.kill-for", envDuration("CHAOS_KILL_FOR", 60*time.Second), "how long workers are SIGKILLed at random (env CHAOS_KILL_FOR)")
	flagKillEvery    = flag.Duration("chaos.kill-every", envDuration("CHAOS_KILL_EVERY", 500*time.Millisecond), "mean gap between two worker kills, drawn uniformly from [0, 2×this] (env CHAOS_KILL_EVERY)")
	flagHUPs         = flag.Int("chaos.hups", envInt("CHAOS_HUPS", 100), "SIGHUPs in the burst (env CHAOS_HUPS)")
	flagReloads      = flag.Int("chaos.reloads", envInt("CHAOS_RELOADS", 1000), "consecutive reloads of the leak test; figures at 0, half and all (env CHAOS_RELOADS)")
	flagWorkers      = flag.Int("chaos.workers", envInt("CHAOS_WORKERS", 4), "workers per generation (env CHAOS_WORKERS)")
	flagClients      = flag.Int("chaos.clients", envInt("CHAOS_CLIENTS", 2), "concurrent load clients, one request in flight each (env CHAOS_CLIENTS)")
	flagReadyTimeout = flag.Duration("chaos.ready-timeout", envDuration("CHAOS_READY_TIMEOUT", 5*time.Second), "--ready-timeout of the tests whose new generation hangs or crashes: long enough for a healthy generation on a loaded machine (env CHAOS_READY_TIMEOUT)")
	flagDrainTimeout = flag.Duration("chaos.drain-timeout", envDuration("CHAOS_DRAIN_TIMEOUT", 2*time.Second), "--drain-timeout of the tests whose old generation ignores SIGTERM (env CHAOS_DRAIN_TIMEOUT)")
	flagTimeout      = flag.Duration("chaos.wait", envDuration("CHAOS_WAIT", 60*time.Second), "bound of every single wait (env CHAOS_WAIT)")
	flagRSSSlack     = flag.Int("chaos.rss-slack-kib", envInt("CHAOS_RSS_SLACK_KIB", 10<<10), "allowed growth of the master's VmRSS over the reloads, KiB (env CHAOS_RSS_SLACK_KIB)")
	flagFDSlack      = flag.Int("chaos.fd-slack", envInt("CHAOS_FD_SLACK", 2), "allowed difference of the master's open descriptors between checkpoints (env CHAOS_FD_SLACK)")
	flagJSON         = flag.String("chaos.json", os.Getenv("CHAOS_JSON"), "write the figures as JSON to this file (env CHAOS_JSON)")
	flagMarkdown     = flag.String("chaos.markdown", os.Getenv("CHAOS_MARKDOWN"), "write the figures as a Markdown table to this file (env CHAOS_MARKDOWN)")
	flagBinary       = flag.String("chaos.hotcluster", os.Getenv("CHAOS_HOTCLUSTER"), "test this hotcluster binary instead of building the module root (env CHAOS_HOTCLUSTER)")
	flagLogDir       = flag.String("chaos.logdir", os.Getenv("CHAOS_LOGDIR"), "write each master's whole output (its log and its workers') to DIR/TEST.log (env CHAOS_LOGDIR)")
	flagCommand      = flag.String("chaos.command", os.Getenv("CHAOS_COMMAND"), "the command line to quote in the summary (env CHAOS_COMMAND)")
)

// hotclusterBin is the hotcluster binary built for this run.
var hotclusterBin string

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	// One build for every test, in a directory of its own removed at the
	// end (a test's TempDir would vanish with that test).
	dir, err := os.MkdirTemp("", "hotcluster-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	if *flagBinary != "" {
		if hotclusterBin, err = filepath.Abs(*flagBinary); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 1
		}
	} else {
		hotclusterBin = filepath.Join(dir, "hotcluster")
		if err := buildHotcluster(hotclusterBin); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "chaos: built hotcluster in %s\n", time.Since(start).Round(time.Millisecond))
	}
	code := m.Run()
	if err := writeSummary(time.Since(start), code); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// buildHotcluster builds the hotcluster module (the repository's root, two
// directories above this package's, where go test runs the tests) into out.
func buildHotcluster(out string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("module root: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", out, ".")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build hotcluster: %v\n%s", err, b)
	}
	return nil
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "chaos: %s=%q is not a duration; using %s\n", name, v, def)
	}
	return def
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			return n
		}
		fmt.Fprintf(os.Stderr, "chaos: %s=%q is not a number; using %d\n", name, v, def)
	}
	return def
}
