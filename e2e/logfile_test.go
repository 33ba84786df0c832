package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

func init() {
	roles.Register("log-bytes", roleLogBytes)
}

// roleLogBytes prints LOG_KIB lines of 1 KiB at start, then serves as
// log-printer does.
func roleLogBytes() int {
	n, _ := strconv.Atoi(os.Getenv("LOG_KIB"))
	pad := strings.Repeat("x", 1000)
	w := bufioWriter(os.Stdout)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "bytes %06d %s\n", i, pad)
	}
	w.Flush()
	return roleLogPrinter()
}

// waitFile waits until the file at path has a line matching re, and
// returns its submatches.
func waitFile(t *testing.T, path, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(`(?m)` + re)
	var sm []string
	eventually(t, fmt.Sprintf("%s has a line matching %q", path, re), func() bool {
		b, _ := os.ReadFile(path)
		sm = rx.FindStringSubmatch(string(b))
		return sm != nil
	})
	return sm
}

// readLog reads a log file, gunzipping a .gz.
func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return string(b)
}

// wholeLines checks that every line of a log file is one of the master's
// or one of the worker's, whole.
func wholeLines(t *testing.T, name, text string) int {
	t.Helper()
	rx := regexp.MustCompile(`^` + rfc3339ms + `(hotcluster: .+|\[g1 w0\] bytes \d{6} x{1000}|\[g1 w0( err)?\] .+)$`)
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("%s does not end with a whole line", name)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !rx.MatchString(l) {
			t.Errorf("%s: a line cut or mixed: %.120q", name, l)
			continue
		}
		n++
	}
	return n
}

// --log-file rotates at --log-max-size, keeps --log-max-files rotated
// files (gzipped with --log-compress), every line whole and stamped, and
// nothing goes to stdout or stderr.
func TestLogFileRotates(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "app.log")
			args := []string{"--workers", "1", "--listen", "web=127.0.0.1:0", "--env", "LOG_KIB=5000",
				"--log-file", path, "--log-max-size", "1M", "--log-max-files", "2"}
			if compress {
				args = append(args, "--log-compress")
			}
			m := startSplit(t, nil, nil, "log-bytes", args...)
			// Its lines of the start may be in any file by now.
			eventually(t, "serving", func() bool {
				code, out, _, err := ctlRun(m.env, "status", "--json")
				return err == nil && code == 0 && strings.Contains(out, `"state": "serving"`)
			})
			suffix := ".log"
			if compress {
				suffix = ".log.gz"
			}
			var rotated []string
			eventually(t, "2 rotated files, "+suffix, func() bool {
				all, _ := filepath.Glob(filepath.Join(dir, "app-*"))
				rotated, _ = filepath.Glob(filepath.Join(dir, "app-*"+suffix))
				return len(rotated) == 2 && len(all) == 2
			})
			waitFile(t, path, `quote " and`) // the last line, in the current file
			for _, f := range append(rotated, path) {
				if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o640 || !compress && fi.Size() > 1<<20 {
					t.Errorf("%s: %v, %v; want mode 0640 and at most 1 MiB", f, fi, err)
				}
				wholeLines(t, f, readLog(t, f))
			}
			syscall.Kill(m.cmd.Process.Pid, syscall.SIGTERM)
			<-m.done
			if out := append(m.stdout.all(), m.stderr.all()...); len(out) > 0 {
				t.Errorf("lines outside the log file: %q", out[:min(5, len(out))])
			}
		})
	}
}

// SIGUSR1 after logrotate's mv: the lines after it go to a new file of
// the same name (0640), the moved file keeps what came before.
func TestLogFileReopenOnUSR1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	m := startSplit(t, nil, nil, "log-printer", "--workers", "1", "--listen", "web=127.0.0.1:0", "--log-file", path)
	addr := waitFile(t, path, `hotcluster: listening on (\S+) as web `)[1]
	waitFile(t, path, `hotcluster: serving \(master pid`)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := get("tcp", addr, "/before"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, path+".1", `served /before `)
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGUSR1)
	waitFile(t, path, `hotcluster: SIGUSR1: reopened `+regexp.QuoteMeta(path)+`$`)
	if _, err := get("tcp", addr, "/after"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, path, `served /after `)
	if old := readLog(t, path+".1"); strings.Contains(old, "/after") || strings.Contains(old, "SIGUSR1") {
		t.Errorf("the moved file got lines after the reopen:\n%s", old)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("new file: %v, %v; want mode 0640", fi, err)
	}
	// A name that became a symlink is refused at reopen, and the lines go
	// on to the file open before.
	os.Rename(path, path+".2")
	os.Symlink("/etc/passwd", path)
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGUSR1)
	waitFile(t, path+".2", `SIGUSR1: reopen the log files: .*not a regular file`)
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v %v", fi, err)
	}
}

// A log file that cannot be opened safely, or a bad rotation setting, is a
// usage error before anything starts.
func TestLogFileBadInput(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	top := t.TempDir()
	shared := filepath.Join(top, "shared")
	os.Mkdir(shared, 0o775)
	os.Chmod(shared, 0o775)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-file", filepath.Join(shared, "app.log")}, "writable by others"},
		{[]string{"--log-file", filepath.Join(top, "missing", "app.log")}, "no such file or directory"},
		{[]string{"--log-file", "/etc/passwd/"}, "want a file path"},
		{[]string{"--log-max-size", "100K"}, "--log-max-size"},
		{[]string{"--log-max-files", "-1"}, "--log-max-files -1"},
		{[]string{"--log-buffer", "-3"}, "--log-buffer -3"},
		{[]string{"--log-file", filepath.Join(top, "a.log"), "--worker-log-file", filepath.Join(top, "a.log")}, "--worker-log-file is --log-file"},
	} {
		code, out := hotcluster(t, append(append([]string{"run", "--listen", "127.0.0.1:0"}, tc.args...), "--", self)...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 saying %q", tc.args, code, out, tc.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(shared, "app.log")); err == nil {
		t.Error("a file was made in a directory others can write")
	}
}

// A full disk: the log file's lines are dropped and counted (status,
// metrics), one warning goes to stderr, and the master and its workers go
// on serving and reloading; once there is room again the file says how
// many lines it lost.
func TestLogFileFullDisk(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("a small tmpfs in a mount namespace needs root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	os.Mkdir(dir, 0o755)
	path := filepath.Join(dir, "app.log")
	wrap := []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
		`mount -t tmpfs -o size=1m,mode=0755 tmpfs "$0" && exec "$@"`, dir}
	m := startSplit(t, wrap, nil, "log-printer", "--workers", "2", "--listen", "web=127.0.0.1:0", "--log-file", path,
		"--metrics", "127.0.0.1:0")
	pid := m.cmd.Process.Pid
	// The test sees the master's tmpfs through its root.
	inside := fmt.Sprintf("/proc/%d/root%s", pid, path)
	addr := waitFile(t, inside, `hotcluster: listening on (\S+) as web `)[1]
	metricsURL := waitFile(t, inside, `metrics on (http://\S+/metrics)`)[1]
	waitFile(t, inside, `hotcluster: serving \(master pid`)
	filler := filepath.Join(filepath.Dir(inside), "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 64<<10)); err != nil {
			if !errorsIsENOSPC(err) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	m.stderr.waitLine(`hotcluster: log ` + regexp.QuoteMeta(path) + `: .*no space left on device; its lines are dropped`)
	if out := mustCtl(t, m.env, "reload"); !strings.Contains(out, "generation 2 ready") {
		t.Fatalf("reload with a full disk: %s", out)
	}
	assertNoFailures(t, stop())
	st := statusOf(t, m.env)
	if st.LogDropped == 0 || st.Log == nil || len(st.Log.Outputs) != 1 || st.Log.Outputs[0].Name != path ||
		!strings.Contains(st.Log.Outputs[0].Error, "no space left") {
		t.Errorf("status: %d dropped, log %+v; want the file's lost lines and its error", st.LogDropped, st.Log)
	}
	if v, ok := metricValue(scrape(t, metricsURL), "hotcluster_log_lines_dropped_total", nil); !ok || v == 0 {
		t.Errorf("hotcluster_log_lines_dropped_total = %v (%v), want the lost lines", v, ok)
	}
	if n := m.stderr.count(`its lines are dropped`); n != 1 {
		t.Errorf("%d warnings on stderr, want one for the burst", n)
	}
	os.Remove(filler)
	if _, err := get("tcp", addr, "/after-room"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, inside, `hotcluster: dropped \d+ log lines: `+regexp.QuoteMeta(path)+` was not written fast enough, or failed`)
	waitFile(t, inside, `served /after-room `)
}

func errorsIsENOSPC(err error) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == syscall.ENOSPC
}

// count returns how many lines match re.
func (c *collector) count(re string) int {
	rx := regexp.MustCompile(re)
	n := 0
	for _, l := range c.all() {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

func bufioWriter(f *os.File) *bufio.Writer { return bufio.NewWriterSize(f, 64<<10) }
