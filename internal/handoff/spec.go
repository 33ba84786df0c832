package handoff

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Spec is one parsed --listen value.
type Spec struct {
	// Name is what workers see in LISTEN_FDNAMES.
	Name string
	// Network is tcp, tcp4, tcp6, udp, udp4, udp6 or unix.
	Network string
	// Addr is host:port, or a socket path for unix ("@name" is abstract).
	Addr string
}

// String gives the address in the form a user typed it, for messages.
func (s Spec) String() string {
	switch s.Network {
	case "tcp":
		return s.Addr
	case "unix":
		return "unix://" + s.Addr
	default:
		return s.Network + "://" + s.Addr
	}
}

// Stream reports whether the listener is connection oriented.
func (s Spec) Stream() bool { return !strings.HasPrefix(s.Network, "udp") }

// ParseSpec parses "[NAME=]ADDR" where ADDR is ":8080", "127.0.0.1:8080",
// "[::1]:8080", "tcp://…", "tcp4://…", "tcp6://…", "udp://…", "udp4://…",
// "udp6://…" or "unix:///path/app.sock". Without NAME the name is derived
// from the network and port ("tcp-8080", "udp-5353", "unix-app.sock").
func ParseSpec(s string) (Spec, error) {
	orig := s
	bad := func(format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("listen %q: %s", orig, fmt.Sprintf(format, args...))
	}
	var spec Spec
	if i := strings.IndexByte(s, '='); i >= 0 && !strings.Contains(s[:i], "/") {
		spec.Name, s = s[:i], s[i+1:]
		if spec.Name == "" {
			return bad("empty name before '='")
		}
		for _, r := range spec.Name {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return bad("name %q may hold only letters, digits, '-', '_' and '.'", spec.Name)
			}
		}
	}
	spec.Network = "tcp"
	if i := strings.Index(s, "://"); i >= 0 {
		spec.Network, s = s[:i], s[i+3:]
	}
	switch spec.Network {
	case "unix":
		if s == "" {
			return bad("empty socket path; write unix:///path/app.sock")
		}
		if !strings.HasPrefix(s, "@") && !filepath.IsAbs(s) {
			return bad("socket path %q is not absolute; write unix:///path/app.sock", s)
		}
		if len(s) > 107 {
			return bad("socket path is %d bytes long; the kernel allows 107", len(s))
		}
		spec.Addr = s
		if spec.Name == "" {
			spec.Name = "unix-" + sanitize(filepath.Base(s))
		}
		return spec, nil
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return bad("unknown network %q; use tcp, tcp4, tcp6, udp, udp4, udp6 or unix", spec.Network)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bad("want [HOST]:PORT, e.g. :8080 or 127.0.0.1:8080 or [::1]:8080")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return bad("invalid port %q; want a number from 0 to 65535", port)
	}
	if host != "" {
		if ip := net.ParseIP(host); ip == nil {
			if strings.ContainsAny(host, " /[]") {
				return bad("invalid host %q", host)
			}
		} else if ip.To4() == nil && strings.HasSuffix(spec.Network, "4") {
			return bad("%s is not an IPv4 address but the network is %s", host, spec.Network)
		} else if ip.To4() != nil && strings.HasSuffix(spec.Network, "6") {
			return bad("%s is not an IPv6 address but the network is %s", host, spec.Network)
		}
	}
	spec.Addr = net.JoinHostPort(host, strconv.FormatUint(n, 10))
	if spec.Name == "" {
		spec.Name = strings.TrimRight(spec.Network, "46") + "-" + strconv.FormatUint(n, 10)
	}
	return spec, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
