package handoff

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Spec
		err  string
	}{
		{in: ":8080", want: Spec{"tcp-8080", "tcp", ":8080"}},
		{in: "127.0.0.1:8080", want: Spec{"tcp-8080", "tcp", "127.0.0.1:8080"}},
		{in: "[::1]:8080", want: Spec{"tcp-8080", "tcp", "[::1]:8080"}},
		{in: "web=tcp://127.0.0.1:80", want: Spec{"web", "tcp", "127.0.0.1:80"}},
		{in: "tcp4://:8080", want: Spec{"tcp-8080", "tcp4", ":8080"}},
		{in: "tcp6://[::]:8080", want: Spec{"tcp-8080", "tcp6", "[::]:8080"}},
		{in: "dns=udp://:5353", want: Spec{"dns", "udp", ":5353"}},
		{in: "udp4://127.0.0.1:0", want: Spec{"udp-0", "udp4", "127.0.0.1:0"}},
		{in: "unix:///run/app.sock", want: Spec{"unix-app.sock", "unix", "/run/app.sock"}},
		{in: "api=unix:///tmp/a=b.sock", want: Spec{"api", "unix", "/tmp/a=b.sock"}},
		{in: "unix://@abstract", want: Spec{"unix-_abstract", "unix", "@abstract"}},
		{in: "localhost:8080", want: Spec{"tcp-8080", "tcp", "localhost:8080"}},
		{in: "8080", err: "want [HOST]:PORT"},
		{in: "127.0.0.1:99999", err: `invalid port "99999"`},
		{in: "127.0.0.1:http", err: `invalid port "http"`},
		{in: "sctp://:80", err: `unknown network "sctp"`},
		{in: "unix://relative.sock", err: "not absolute"},
		{in: "unix://", err: "empty socket path"},
		{in: "=:80", err: "empty name"},
		{in: "a:b=:80", err: "may hold only"},
		{in: "tcp4://[::1]:80", err: "not an IPv4 address"},
		{in: "tcp6://127.0.0.1:80", err: "not an IPv6 address"},
		{in: "unix:///" + strings.Repeat("x", 120), err: "the kernel allows 107"},
	} {
		got, err := ParseSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("ParseSpec(%q) error = %v, want one containing %q and the input", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{":8080", "web=tcp6://[::1]:1", "unix:///a.sock", "udp://:53", "x=y=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSpec(s)
		if err != nil {
			return
		}
		if spec.Name == "" || spec.Addr == "" || strings.ContainsAny(spec.Name, ":=") {
			t.Fatalf("ParseSpec(%q) = %+v: empty or bad field", s, spec)
		}
		if _, err := ParseSpec(spec.Name + "=" + spec.String()); err != nil {
			t.Fatalf("ParseSpec(%q) gave %+v, whose String does not parse: %v", s, spec, err)
		}
	})
}
