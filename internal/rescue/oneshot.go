package rescue

import (
	"bytes"
	"errors"
	"io"
)

// A keep-alive connection relayed at a turnover carries one more request
// and then ends: the master asks the serving worker to close after its
// answer and tells the client so (Connection: close both ways), so the
// client's next request opens a connection of its own, straight to the
// serving generation, and the relay, the only cost of the rescue, lasts
// one request. Without the header in the answer, a client would reuse the
// connection after the server's close and meet the very race the rescue
// is for.

// closeHeader is what the master adds to the request and to its answer.
const closeHeader = "Connection: close\r\n"

// maxHead bounds the head of an answer the master reads to add the header
// (servers bound theirs too: nginx at 4-8 KiB by default, Go's client at
// 1 MiB of headers); a longer head is passed on unchanged.
const maxHead = 64 << 10

// maxInterim bounds the interim (1xx) answers passed on before the final
// one.
const maxInterim = 8

// oneShotRequest looks at the start of a request (b begins with a request
// line, as requestLine says) and returns the length of its line, the
// empty lines before it included, when the relay may end after it: its
// whole head is in b, and it asks for no protocol upgrade (a WebSocket's
// Connection: Upgrade must reach the server as sent). ok false: relay the
// connection as it is, for its life.
func oneShotRequest(b []byte) (line int, ok bool) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return 0, false
	}
	// Skip the empty lines before the request line.
	for nl >= 0 && len(bytes.TrimRight(b[line:nl], "\r")) == 0 {
		line = nl + 1
		k := bytes.IndexByte(b[line:], '\n')
		if k < 0 {
			return 0, false
		}
		nl = line + k
	}
	line = nl + 1
	for rest := b[line:]; ; {
		k := bytes.IndexByte(rest, '\n')
		if k < 0 {
			return 0, false // the head goes on beyond what was peeked
		}
		h := bytes.TrimRight(rest[:k], "\r")
		if len(h) == 0 {
			return line, true
		}
		if name, value, found := bytes.Cut(h, []byte(":")); found {
			name = bytes.TrimSpace(name)
			if bytes.EqualFold(name, []byte("Upgrade")) {
				return 0, false
			}
			if bytes.EqualFold(name, []byte("Connection")) && containsFold(value, "upgrade") {
				return 0, false
			}
		}
		rest = rest[k+1:]
	}
}

func containsFold(b []byte, s string) bool {
	return bytes.Contains(bytes.ToLower(b), []byte(s))
}

// closeAnswer reads the head of the server's answer from up and writes it
// to client with closeHeader after its status line, interim (1xx) answers
// passed on as they are; what it read beyond the head follows. A 101
// (Switching Protocols), a head beyond maxHead or bytes that are not an
// HTTP/1.x answer are passed on unchanged. It returns true if up ended
// before a whole head (what came was passed on).
func closeAnswer(up io.Reader, client io.Writer) (ended bool, err error) {
	buf := make([]byte, 0, 4096)
	for interim := 0; ; {
		end := -1
		for end < 0 {
			if i := headEnd(buf); i >= 0 {
				end = i
				break
			}
			if len(buf) >= maxHead || !maybeAnswer(buf) {
				_, err := client.Write(buf)
				return false, err
			}
			if len(buf) == cap(buf) {
				buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
			}
			n, rerr := up.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if rerr != nil {
				if _, err := client.Write(buf); err != nil {
					return false, err
				}
				if errors.Is(rerr, io.EOF) {
					return true, nil
				}
				return false, rerr
			}
		}
		code, ok := statusCode(buf[:end])
		switch {
		case ok && code >= 100 && code < 200 && code != 101 && interim < maxInterim:
			if _, err := client.Write(buf[:end]); err != nil {
				return false, err
			}
			buf = append(buf[:0], buf[end:]...)
			interim++
			continue
		case !ok || code == 101:
			_, err := client.Write(buf)
			return false, err
		}
		line := bytes.IndexByte(buf, '\n') + 1
		out := make([]byte, 0, len(buf)+len(closeHeader))
		out = append(out, buf[:line]...)
		out = append(out, closeHeader...)
		out = append(out, buf[line:]...)
		_, err := client.Write(out)
		return false, err
	}
}

// headEnd returns the length of the head at the start of b (through the
// empty line that ends it), or -1.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// maybeAnswer reports whether b could begin an HTTP/1.x answer.
func maybeAnswer(b []byte) bool {
	const v = "HTTP/1."
	n := min(len(b), len(v))
	return string(b[:n]) == v[:n]
}

// statusCode reads the code of an HTTP/1.x status line.
func statusCode(head []byte) (int, bool) {
	const v = "HTTP/1.x "
	if len(head) < len(v)+3 || !maybeAnswer(head) || head[len(v)-1] != ' ' {
		return 0, false
	}
	c := head[len(v) : len(v)+3]
	code := 0
	for _, d := range c {
		if d < '0' || d > '9' {
			return 0, false
		}
		code = code*10 + int(d-'0')
	}
	return code, true
}
