package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve runs a Server with h on a socket in a fresh directory until the
// test ends, and returns the socket's path.
func serve(t *testing.T, h Handler, timeout time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl", "x.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, h)
	srv.RequestTimeout = timeout
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func raw(t *testing.T, path string, send string, closeWrite bool) Response {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(send))
	if closeWrite {
		c.(*net.UnixConn).CloseWrite()
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		t.Fatalf("no answer to %.40q: %v", send, err)
	}
	var r Response
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("answer %q: %v", line, err)
	}
	return r
}

func TestServerAnswersAndRefuses(t *testing.T) {
	t.Parallel()
	h := func(ctx context.Context, req Request, r *Replier) {
		r.OK(map[string]string{"cmd": req.Cmd})
	}
	path := serve(t, h, 200*time.Millisecond)
	var got map[string]string
	if err := Call(context.Background(), path, Request{Cmd: CmdStatus}, &got); err != nil || got["cmd"] != "status" {
		t.Fatalf("status: %v %v", got, err)
	}
	for _, tc := range []struct {
		send       string
		closeWrite bool
		want       string
	}{
		{"{\"cmd\":\"status\"\n", false, "bad request"},
		{`{"cmd":"status"} {"cmd":"stop"}` + "\n", false, "more than one JSON value"},
		{`{"cmd":"scale","scale":"x"}` + "\n", false, `scale "x"`},
		{`{"cmd":"send"}` + "\n", false, "send without a message"},
		{`{"cmd":"status","slot":1}` + "\n", false, "only for the send and logs commands"},
		{`{"cmd":"status","follow":true}` + "\n", false, "only for the logs command"},
		{`{"cmd":"logs","slot":-1}` + "\n", false, "slot -1: want 0 or more"},
		{`{"cmd":"stat`, false, "incomplete after 200ms"},
		{`{"cmd":"stat`, true, "bad request"},
		{"", true, "no request before the connection closed"},
	} {
		if r := raw(t, path, tc.send, tc.closeWrite); r.OK || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%q: %+v, want an error with %q", tc.send, r, tc.want)
		}
	}
	// An oversized request is answered before it is all sent (to a server
	// that waits long enough for the first MiB on a busy machine).
	c, err := net.Dial("unix", serve(t, h, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go c.Write(append([]byte(`{"cmd":"send","message":"`), bytes.Repeat([]byte("x"), 2*MaxRequest)...))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, "over 1052672 bytes") {
		t.Errorf("oversized request: %q", line)
	}
	if err := Call(context.Background(), path, Request{Cmd: CmdStatus}, &got); err != nil {
		t.Fatalf("status after bad requests: %v", err)
	}
}

// Serve returns once ctx ends, also with a stream open: it owns and ends
// its connections.
func TestServeEndsStreams(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ctl", "x.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	var hub Hub
	streaming := make(chan struct{})
	srv := NewServer(ln, func(ctx context.Context, req Request, r *Replier) {
		ServeEvents(ctx, r, &hub, func() Event {
			close(streaming)
			return Event{Event: "connected"}
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	got := make(chan string, 1)
	evDone := make(chan error, 1)
	go func() {
		evDone <- Events(context.Background(), path, func(m json.RawMessage) error {
			got <- string(m)
			return nil
		})
	}()
	<-streaming
	if s := <-got; !strings.Contains(s, `"event":"connected"`) {
		t.Errorf("first line %s, want connected", s)
	}
	hub.Publish(map[string]int{"n": 1})
	if s := <-got; s != `{"n":1}` {
		t.Errorf("event %s", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := <-evDone; err != nil {
		t.Errorf("Events after the server stopped: %v, want nil", err)
	}
}

func TestListenRefusesLiveAndReplacesStale(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ctl")
	path := filepath.Join(dir, "a.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Errorf("second Listen: %v, want ErrInUse", err)
	}
	ln.Close() // the file stays, as after a master that was killed
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln2.Close()
	if err := os.WriteFile(filepath.Join(dir, "b.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(dir, "b.sock")); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	os.Chmod(dir, 0o755)
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "others may reach its sockets") {
		t.Errorf("Listen in a 0755 directory: %v", err)
	}
	long := filepath.Join(dir, strings.Repeat("x", 120)+".sock")
	if _, err := Listen(long); err == nil || !strings.Contains(err.Error(), "give a shorter --control") {
		t.Errorf("Listen on a %d-byte path: %v", len(long), err)
	}
	names, err := Instances(dir)
	if err != nil || strings.Join(names, ",") != "a" {
		t.Errorf("Instances: %v %v", names, err)
	}
}

// A subscriber that does not read is dropped; Publish never waits.
func TestHubDropsSlowSubscribers(t *testing.T) {
	t.Parallel()
	var hub Hub
	slow, cancelSlow := hub.Subscribe()
	defer cancelSlow()
	fast, cancelFast := hub.Subscribe()
	defer cancelFast()
	n := 0
	for i := range hubBuffer + 10 {
		hub.Publish(i)
		if _, ok := <-fast; ok {
			n++
		}
	}
	if n != hubBuffer+10 {
		t.Errorf("the reading subscriber got %d events, want %d", n, hubBuffer+10)
	}
	k := 0
	for range slow {
		k++
	}
	if k != hubBuffer {
		t.Errorf("the slow subscriber got %d events before being dropped, want %d", k, hubBuffer)
	}
}

func TestParseScale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		n        int
		relative bool
		ok       bool
	}{
		{"4", 4, false, true}, {"+1", 1, true, true}, {"-2", -2, true, true}, {"+0", 0, true, true},
		{"0", 0, false, false}, {"", 0, false, false}, {"x", 0, false, false}, {"1.5", 0, false, false},
		{"++1", 0, false, false}, {"9999999", 0, false, false}, {"-", 0, false, false}, {"5000", 0, false, false}, {"4096", 4096, false, true},
	} {
		n, rel, err := ParseScale(tc.in)
		if (err == nil) != tc.ok || tc.ok && (n != tc.n || rel != tc.relative) {
			t.Errorf("ParseScale(%q) = %d, %v, %v", tc.in, n, rel, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"status"}`, `{"cmd":"scale","scale":"+1"}`, `{"cmd":"send","slot":0,"message":{"a":[1]}}`,
		`{"cmd":"stop","force":true}`, `{"cmd":"send","message":"\ud800"}`, `[]`, `{"cmd":null}`, "\x00",
		`{"cmd":"logs","lines":-1,"follow":true,"slot":2,"generation":3,"since":"2026-11-25T10:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := DecodeRequest(line)
		if err != nil {
			if !errors.Is(err, ErrRequest) {
				t.Fatalf("DecodeRequest(%q): error %v is not ErrRequest", line, err)
			}
			return
		}
		// What decodes is valid and survives a round trip.
		if err := req.Check(); err != nil {
			t.Fatalf("DecodeRequest(%q) = %+v, which Check refuses: %v", line, req, err)
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRequest(b)
		if err != nil || again.Cmd != req.Cmd || again.Scale != req.Scale || again.Force != req.Force {
			t.Fatalf("round trip of %q: %+v, %v", line, again, err)
		}
		// And ReadRequest takes it the same way from a stream.
		if _, err := ReadRequest(bufio.NewReader(bytes.NewReader(append(line, '\n')))); err != nil && !errors.Is(err, ErrRequest) {
			t.Fatalf("ReadRequest(%q): %v", line, err)
		}
	})
}

func TestNameFrom(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"server": "server", "my app": "my_app", ".hidden": "hidden", "": "hotcluster", "...": "hotcluster",
		"héllo": "h__llo", strings.Repeat("x", 80): strings.Repeat("x", 64),
	} {
		got := NameFrom(in)
		if got != want || CheckName(got) != nil {
			t.Errorf("NameFrom(%q) = %q (CheckName: %v), want %q", in, got, CheckName(got), want)
		}
	}
}
