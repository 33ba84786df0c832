package rescue

// verdict is what the first unread bytes of a connection say about it.
type verdict int

const (
	// notRequest: anything but the start of an HTTP/1.x request (a TLS
	// record, the HTTP/2 preface, the middle of a request the worker read
	// part of): the connection is reset.
	notRequest verdict = iota
	// partial: a prefix of a request line; wait for the rest.
	partial
	// request: an HTTP/1.x request line, CRLF or LF included.
	request
)

func (v verdict) String() string {
	return [...]string{"not a request", "partial request line", "request line"}[v]
}

// Bounds of what counts as a request line; a line longer than maxLine is not
// one (servers refuse such lines too: Go's http.Server at 1 MiB of headers,
// nginx at 8 KiB by default, Node at 16 KiB).
const (
	maxLine      = 8 << 10
	maxMethod    = 32
	maxEmptyLine = 4 // CRLFs tolerated before the request line
	peekSize     = maxLine + 2*maxEmptyLine
)

// requestLine tells whether b begins with an HTTP/1.x request line, as RFC
// 9112 section 3 has it: method SP request-target SP HTTP-version CRLF,
// where the method is a token, the target has no whitespace or control
// characters, and the version is HTTP/1.0 or HTTP/1.1 (any HTTP/1.DIGIT).
// A few empty lines before it are allowed (section 2.2 asks servers to
// ignore at least one, which some clients send after a POST body). A bare LF
// ends the line too, as most servers accept.
//
// Nothing else is accepted: a TLS record begins with a byte below 0x20,
// the HTTP/2 connection preface (PRI * HTTP/2.0) has the wrong version,
// and bytes from the middle of a request rarely form a request line; that
// is what makes relaying at this boundary safe for any protocol.
func requestLine(b []byte) verdict {
	i := 0
	for n := 0; n < maxEmptyLine; n++ {
		switch {
		case i < len(b) && b[i] == '\n':
			i++
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			i += 2
		case i+1 == len(b) && b[i] == '\r':
			return partial
		default:
			n = maxEmptyLine
		}
	}
	b = b[i:]
	if len(b) == 0 {
		return partial
	}
	// method
	i = 0
	for i < len(b) && isTokenChar(b[i]) {
		i++
		if i > maxMethod {
			return notRequest
		}
	}
	if i == len(b) {
		return partial
	}
	if i == 0 || b[i] != ' ' {
		return notRequest
	}
	// request-target
	start := i + 1
	i = start
	for i < len(b) && isTargetChar(b[i]) {
		i++
		if i > maxLine {
			return notRequest
		}
	}
	if i == len(b) {
		return partial
	}
	if i == start || b[i] != ' ' {
		return notRequest
	}
	// HTTP-version and the line's end
	const version = "HTTP/1."
	rest := b[i+1:]
	for k := 0; k < len(version); k++ {
		if k == len(rest) {
			return partial
		}
		if rest[k] != version[k] {
			return notRequest
		}
	}
	rest = rest[len(version):]
	switch {
	case len(rest) == 0:
		return partial
	case rest[0] < '0' || rest[0] > '9':
		return notRequest
	}
	rest = rest[1:]
	switch {
	case len(rest) == 0:
		return partial
	case rest[0] == '\n':
		return request
	case rest[0] != '\r':
		return notRequest
	case len(rest) == 1:
		return partial
	case rest[1] == '\n':
		return request
	}
	return notRequest
}

// isTokenChar: RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// isTargetChar: a visible character of a request target; bytes above 0x7f
// are let through, as servers accept raw UTF-8 in paths.
func isTargetChar(c byte) bool {
	return c > ' ' && c != 0x7f
}
