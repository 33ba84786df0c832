package signals

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestTranslate(t *testing.T) {
	t.Parallel()
	in := []os.Signal{
		syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTTIN, syscall.SIGTTOU,
		syscall.SIGUSR2, syscall.SIGTERM,
	}
	want := []Intent{Reload, ReopenLogs, ScaleUp, ScaleDown, Upgrade, Stop}
	c := make(chan os.Signal, len(in))
	for _, s := range in {
		c <- s
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got []Intent
	err := Translate(ctx, c, func(i Intent) {
		got = append(got, i)
		if len(got) == len(want) {
			cancel()
		}
	})
	if err != context.Canceled {
		t.Fatalf("Translate returned %v, want context.Canceled", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("intent %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

// A repeated stop signal is a ForceStop only once RepeatWindow has passed:
// the two SIGTERMs that timeout(1) sends at once are one request.
func TestRepeatedStop(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	tr := Translator{Now: func() time.Time { return now }}
	step := func(sig os.Signal, after time.Duration, want Intent, wantOK bool) {
		t.Helper()
		now = now.Add(after)
		got, ok := tr.Intent(sig)
		if got != want || ok != wantOK {
			t.Errorf("%v after %v: got %v, %v; want %v, %v", sig, after, got, ok, want, wantOK)
		}
	}
	step(syscall.SIGTERM, 0, Stop, true)
	step(syscall.SIGTERM, 50*time.Microsecond, 0, false)
	step(syscall.SIGINT, 20*time.Millisecond, 0, false)
	step(syscall.SIGHUP, time.Millisecond, Reload, true)
	step(syscall.SIGINT, RepeatWindow, ForceStop, true)
	step(syscall.SIGTERM, time.Second, ForceStop, true)
}
