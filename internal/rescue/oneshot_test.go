package rescue

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestOneShotRequest(t *testing.T) {
	for _, tc := range []struct {
		in   string
		line int
		ok   bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", len("GET / HTTP/1.1\r\n"), true},
		{"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", len("\r\nGET / HTTP/1.1\r\n"), true},
		{"GET / HTTP/1.1\nHost: x\n\n", len("GET / HTTP/1.1\n"), true},
		{"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", len("POST / HTTP/1.1\r\n"), true},
		// The head goes on beyond what was peeked.
		{"GET / HTTP/1.1\r\nHost: x\r\n", 0, false},
		// Upgrades reach the server as sent.
		{"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0, false},
		{"GET / HTTP/1.1\r\nconnection: keep-alive, upgrade\r\n\r\n", 0, false},
	} {
		line, ok := oneShotRequest([]byte(tc.in))
		if line != tc.line || ok != tc.ok {
			t.Errorf("oneShotRequest(%q) = %d, %v; want %d, %v", tc.in, line, ok, tc.line, tc.ok)
		}
	}
}

func TestCloseAnswer(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw"},
		{"HTTP/1.0 200 OK\n\nbody", "HTTP/1.0 200 OK\nConnection: close\r\n\nbody"},
		// Not an answer: passed on as it is.
		{"\x15\x03\x03garbage", "\x15\x03\x03garbage"},
	} {
		// One byte per read: the head is found across reads; what it
		// did not read is what the pump moves after it.
		var out bytes.Buffer
		r := iotest.OneByteReader(strings.NewReader(tc.in))
		if _, err := closeAnswer(r, &out); err != nil {
			t.Fatalf("closeAnswer(%q): %v", tc.in, err)
		}
		rest, _ := io.ReadAll(r)
		if got := out.String() + string(rest); got != tc.want {
			t.Errorf("closeAnswer(%q) then the pump: %q; want %q", tc.in, got, tc.want)
		}
	}
	// An answer cut before its head ends is passed on, and the end said.
	var out bytes.Buffer
	ended, err := closeAnswer(strings.NewReader("HTTP/1.1 200 OK\r\nConte"), &out)
	if err != nil || !ended || out.String() != "HTTP/1.1 200 OK\r\nConte" {
		t.Errorf("cut answer: %q, ended %v, %v", out.String(), ended, err)
	}
}
