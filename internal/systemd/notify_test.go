package systemd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeManager is a notify socket as systemd provides one.
func fakeManager(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return msgs
}

func expect(t *testing.T, msgs <-chan string, parts ...string) {
	t.Helper()
	select {
	case m := <-msgs:
		for _, p := range parts {
			if !strings.Contains(m, p) {
				t.Errorf("message %q lacks %q", m, p)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no message with %q", parts)
	}
}

func TestNotifier(t *testing.T) {
	msgs := fakeManager(t)
	n := NewNotifier()
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}
	n.Ready("serving gen 1\nsecond line")
	expect(t, msgs, "READY=1", "STATUS=serving gen 1")
	n.Reloading("reloading")
	expect(t, msgs, "RELOADING=1", "MONOTONIC_USEC=", "STATUS=reloading")
	n.Stopping("stopping", 30*time.Second)
	expect(t, msgs, "STOPPING=1", "EXTEND_TIMEOUT_USEC=35000000")
	n.MainPID(4242)
	expect(t, msgs, "MAINPID=4242")
}

// The watchdog is fed only while alive says the service works: exactly as
// many pings as answers that said so.
func TestWatchdogFedOnlyWhileAlive(t *testing.T) {
	msgs := fakeManager(t)
	t.Setenv("WATCHDOG_USEC", "20000") // a ping every 10ms
	t.Setenv("WATCHDOG_PID", "")
	n := NewNotifier()
	var mu sync.Mutex
	asks, yes := 0, 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- n.Watchdog(ctx, func(context.Context) bool {
			mu.Lock()
			defer mu.Unlock()
			asks++
			if asks <= 3 || asks%2 == 0 { // alive, then now and then not
				yes++
				return true
			}
			if asks == 11 {
				cancel()
			}
			return false
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A marker after the last ping: the socket keeps datagrams in order.
	c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("MARKER"))
	c.Close()
	pings := 0
	for m := range msgs {
		if m == "MARKER" {
			break
		}
		if m == "WATCHDOG=1" {
			pings++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if pings != yes || yes == asks {
		t.Errorf("%d pings for %d answers of %d that said alive", pings, yes, asks)
	}
}

func TestDisabledIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := NewNotifier()
	if n.Enabled() || n.Ready("x") != nil || n.Watchdog(context.Background(), nil) != nil {
		t.Error("a notifier without NOTIFY_SOCKET did something")
	}
}
