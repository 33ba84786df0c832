package watch

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestLimitErrors(t *testing.T) {
	err := explainAdd("/src/pkg", 8192, syscall.ENOSPC)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("%v does not wrap ENOSPC", err)
	}
	for _, want := range []string{"/src/pkg", "inotify watch limit reached (8192 directories)", "sysctl fs.inotify.max_user_watches=524288"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	err = explainInit(syscall.EMFILE)
	if !errors.Is(err, syscall.EMFILE) || !strings.Contains(err.Error(), "fs.inotify.max_user_instances") {
		t.Errorf("explainInit(EMFILE) = %v, want one naming fs.inotify.max_user_instances", err)
	}
	if err := explainAdd("/src/pkg", 1, syscall.EACCES); !errors.Is(err, syscall.EACCES) || strings.Contains(err.Error(), "sysctl") {
		t.Errorf("explainAdd(EACCES) = %v", err)
	}
}
