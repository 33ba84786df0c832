package signals

import (
	"context"
	"os"
	"syscall"
	"testing"
)

func TestTranslate(t *testing.T) {
	t.Parallel()
	in := []os.Signal{
		syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTTIN, syscall.SIGTTOU,
		syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT, syscall.SIGTERM,
	}
	want := []Intent{Reload, ScaleUp, ScaleDown, Upgrade, Stop, ForceStop, ForceStop}
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
