package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// --log-file with --worker-log-file: hotcluster's own lines go to the
// first file only, every worker line (stdout and stderr, marked) to the
// second only, nothing to stdout or stderr; SIGUSR1 after logrotate's mv
// reopens both.
func TestWorkerLogFileSeparate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own, work := filepath.Join(dir, "hotcluster.log"), filepath.Join(dir, "workers.log")
	m := startSplit(t, nil, nil, "log-printer", "--workers", "2", "--listen", "web=127.0.0.1:0",
		"--log-file", own, "--worker-log-file", work)
	addr := waitFile(t, own, `hotcluster: listening on (\S+) as web `)[1]
	waitFile(t, own, `hotcluster: serving \(master pid`)
	for _, slot := range []string{"0", "1"} {
		waitFile(t, work, `^`+rfc3339ms+`\[g1 w`+slot+`\] out: hello from g1 w`+slot+`$`)
		waitFile(t, work, `^`+rfc3339ms+`\[g1 w`+slot+` err\] err: trouble in g1 w`+slot+`$`)
	}
	if _, err := get("tcp", addr, "/before"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, work, `\] served /before by g1`)

	// logrotate: mv both, then SIGUSR1.
	for _, p := range []string{own, work} {
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
	}
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGUSR1)
	waitFile(t, own, `hotcluster: SIGUSR1: reopened `+regexp.QuoteMeta(own+", "+work)+`$`)
	if _, err := get("tcp", addr, "/after"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, work, `\] served /after by g1`)
	for _, p := range []string{own, work} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("reopened %s: %v, %v; want mode 0640", p, fi, err)
		}
	}
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGTERM)
	<-m.done
	if m.err != nil {
		t.Errorf("master: %v", m.err)
	}

	ownLine := regexp.MustCompile(`^` + rfc3339ms + `hotcluster: `)
	workLine := regexp.MustCompile(`^` + rfc3339ms + `\[g1 w\d( err)?\] `)
	for _, p := range []string{own, own + ".1"} {
		for _, l := range strings.Split(strings.TrimSuffix(readLog(t, p), "\n"), "\n") {
			if !ownLine.MatchString(l) {
				t.Errorf("%s: %q, not one of hotcluster's lines", p, l)
			}
		}
	}
	for _, p := range []string{work, work + ".1"} {
		for _, l := range strings.Split(strings.TrimSuffix(readLog(t, p), "\n"), "\n") {
			if !workLine.MatchString(l) {
				t.Errorf("%s: %q, not a worker's line", p, l)
			}
		}
	}
	if old := readLog(t, work+".1"); strings.Contains(old, "/after") {
		t.Errorf("the moved workers' file got lines after the reopen:\n%s", old)
	}
	if out := append(m.stdout.all(), m.stderr.all()...); len(out) > 0 {
		t.Errorf("lines outside the log files: %q", out[:min(5, len(out))])
	}
}
