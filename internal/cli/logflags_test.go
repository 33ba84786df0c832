package cli

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/hotcluster/hotcluster/internal/logs"
)

// The log flags, from the command line and from the config file.
func TestLogFlags(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	rc, err := reparseRun([]string{"hotcluster", "run", "--name", "shop", "--", exe})
	if err != nil {
		t.Fatal(err)
	}
	l := rc.Log
	if l.Name != "shop" || l.Format != logs.Text || l.Time != nil || l.Level != slog.LevelInfo || l.File != "" || l.NoJournal || l.NoRing ||
		l.Rotate.MaxSize != 100<<20 || l.Rotate.MaxFiles != 5 || l.Rotate.Compress || l.Ring.MaxLines != 10000 || l.Ring.MaxBytes != 4<<20 {
		t.Errorf("defaults: %+v", l)
	}
	rc, err = reparseRun([]string{"hotcluster", "run", "--log-format", "json", "--log-level", "debug", "--log-time=false",
		"--log-file", "/var/log/shop/shop.log", "--worker-log-file", "/var/log/shop/workers.log", "--log-max-size", "10M",
		"--log-max-files", "0", "--log-compress", "--log-journal=false", "--log-buffer", "0", "--log-buffer-size", "1M", "--", exe})
	if err != nil {
		t.Fatal(err)
	}
	l = rc.Log
	if l.Format != logs.JSON || l.Level != slog.LevelDebug || l.Time == nil || *l.Time || l.File != "/var/log/shop/shop.log" ||
		l.WorkerFile != "/var/log/shop/workers.log" || l.Rotate.MaxSize != 10<<20 || l.Rotate.MaxFiles != -1 || !l.Rotate.Compress ||
		!l.NoJournal || !l.NoRing || l.Ring.MaxBytes != 1<<20 {
		t.Errorf("set: %+v", l)
	}
	file := writeConfig(t, "log-time = true\nlog-file = \"/var/log/app.log\"\nlog-buffer = 500\ncommand = [\""+exe+"\"]\n")
	rc, err = reparseRun([]string{"hotcluster", "run", "--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if l := rc.Log; l.Time == nil || !*l.Time || l.File != "/var/log/app.log" || l.Ring.MaxLines != 500 {
		t.Errorf("from the file: %+v", l)
	}
	for args, want := range map[string]string{
		"--log-format xml":                 `--log-format "xml": want text or json`,
		"--log-level trace":                `--log-level "trace"`,
		"--log-max-size 10K":               "--log-max-size",
		"--log-max-files -2":               "--log-max-files -2",
		"--log-buffer -1":                  "--log-buffer -1",
		"--log-buffer-size 0":              "--log-buffer-size",
		"--log-file /tmp/":                 "want a file path",
		"--log-file a --worker-log-file a": "--worker-log-file is --log-file",
	} {
		_, err := reparseRun(append(append([]string{"hotcluster", "run"}, strings.Fields(args)...), "--", exe))
		if ue, ok := err.(*usageError); !ok || !strings.Contains(ue.Error(), want) {
			t.Errorf("%s: %v; want a usage error with %q", args, err, want)
		}
	}
}
