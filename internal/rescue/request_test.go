package rescue

import (
	"bytes"
	"strings"
	"testing"
)

func TestRequestLine(t *testing.T) {
	long := "GET /" + strings.Repeat("a", maxLine) + " HTTP/1.1\r\n"
	for _, tc := range []struct {
		in   string
		want verdict
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", request},
		{"GET / HTTP/1.1\r\n", request},
		{"GET / HTTP/1.0\n", request},
		{"POST /api/v1/items?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", request},
		{"M-SEARCH * HTTP/1.1\r\n", request},
		{"OPTIONS * HTTP/1.1\r\n", request},
		{"GET http://example.com/ HTTP/1.1\r\n", request},
		{"GET /caf\xc3\xa9 HTTP/1.1\r\n", request},
		{"\r\nGET / HTTP/1.1\r\n", request},
		{"\n\nGET / HTTP/1.1\r\n", request},
		// Prefixes wait for more.
		{"", partial},
		{"\r", partial},
		{"\r\n", partial},
		{"G", partial},
		{"GET", partial},
		{"GET ", partial},
		{"GET /index.html", partial},
		{"GET / ", partial},
		{"GET / HTTP/", partial},
		{"GET / HTTP/1.", partial},
		{"GET / HTTP/1.1", partial},
		{"GET / HTTP/1.1\r", partial},
		// Anything else is reset.
		{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", notRequest},       // TLS ClientHello
		{"\x17\x03\x03\x00\x1c", notRequest},                               // TLS application data
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", notRequest},                   // HTTP/2 preface
		{"P/1.1\r\nHost: test\r\n\r\n", notRequest},                        // the rest of a request the worker read part of
		{"Host: test\r\n\r\n", notRequest},                                 // a header line
		{"abc", partial},                                                   // could still be a method
		{"abc\r\n", notRequest},                                            // but not with a line end
		{"GET  / HTTP/1.1\r\n", notRequest},                                // two spaces
		{"GET / HTTP/1.1 \r\n", notRequest},                                // trailing space
		{"GET / HTTP/1.x\r\n", notRequest},                                 // not a digit
		{"GET / HTTP/1.1\rX", notRequest},                                  // CR without LF
		{"GET /\x01 HTTP/1.1\r\n", notRequest},                             // control character
		{"GET / HTTP/1.1x\r\n", notRequest},                                //
		{"G\tT / HTTP/1.1\r\n", notRequest},                                // not a token
		{strings.Repeat("A", maxMethod+1) + " / HTTP/1.1\r\n", notRequest}, // method too long
		{long, notRequest},
		{"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n", notRequest}, // too many empty lines
		{"*1\r\n$4\r\nPING\r\n", notRequest},                   // Redis
		{"SSH-2.0-OpenSSH_9.6\r\n", notRequest},
	} {
		if got := requestLine([]byte(tc.in)); got != tc.want {
			t.Errorf("requestLine(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzRequestLine checks, for any bytes, that a verdict once reached does
// not change as more bytes arrive, and that a request line is only a
// prefix of one until its end.
func FuzzRequestLine(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", "\r\nPOST /x HTTP/1.0\n", "PRI * HTTP/2.0\r\n", "\x16\x03\x01", "GET / HTTP/1.1\r"} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if len(b) > 2*peekSize {
			return
		}
		v := requestLine(b)
		if cut < 0 || cut > len(b) {
			return
		}
		p := requestLine(b[:cut])
		switch {
		case p == request && v != request:
			t.Fatalf("%q is a request line but %q is %v", b[:cut], b, v)
		case p == notRequest && v != notRequest:
			t.Fatalf("%q is not a request but %q is %v", b[:cut], b, v)
		case v == request && bytes.IndexByte(b, '\n') < 0:
			t.Fatalf("%q is a request line without a line end", b)
		}
	})
}
