package intercept

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func inet(s string) sockAddr {
	ap := netip.MustParseAddrPort(s)
	f := unix.AF_INET
	if ap.Addr().Is6() {
		f = unix.AF_INET6
	}
	return sockAddr{family: f, ip: ap.Addr(), port: ap.Port()}
}

func TestFit(t *testing.T) {
	tcp := func(addr string, v6only bool) *target {
		return &target{typ: unix.SOCK_STREAM, addr: inet(addr), v6only: v6only}
	}
	sock := func(path string) *target {
		return &target{typ: unix.SOCK_STREAM, addr: sockAddr{family: unix.AF_UNIX, path: path}}
	}
	for _, tc := range []struct {
		asked string // "unix:PATH" for a unix socket
		typ   int
		t     *target
		want  int
	}{
		// The same port and a host the listener covers.
		{"127.0.0.1:8000", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), exact},
		{"0.0.0.0:8000", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), sameFamily},
		{"[::]:8000", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), otherFamily}, // Go's net.Listen(":8000")
		{"127.0.0.1:8000", unix.SOCK_STREAM, tcp("0.0.0.0:8000", false), sameFamily},
		{"127.0.0.1:8000", unix.SOCK_STREAM, tcp("[::]:8000", false), otherFamily}, // dual-stack covers IPv4
		{"10.1.2.3:8000", unix.SOCK_STREAM, tcp("[::]:8000", false), otherFamily},
		{"10.1.2.3:8000", unix.SOCK_STREAM, tcp("[::]:8000", true), noMatch},      // not when IPv6-only
		{"127.0.0.1:8000", unix.SOCK_STREAM, tcp("[::]:8000", true), otherFamily}, // but localhost takes any wildcard
		{"[::ffff:127.0.0.1]:8000", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), exact},
		{"[::1]:3000", unix.SOCK_STREAM, tcp("127.0.0.1:3000", false), otherFamily}, // localhost as ::1
		{"127.0.0.1:3000", unix.SOCK_STREAM, tcp("[::1]:3000", false), otherFamily},
		{"[::1]:3000", unix.SOCK_STREAM, tcp("0.0.0.0:3000", false), otherFamily},
		{"[::]:8000", unix.SOCK_STREAM, tcp("[::]:8000", false), exact},
		// Not the listener's.
		{"127.0.0.1:8001", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), noMatch},
		{"127.0.0.1:0", unix.SOCK_STREAM, tcp("127.0.0.1:0", false), noMatch},
		{"10.1.2.3:8000", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), noMatch},
		{"127.0.0.2:8000", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), noMatch},
		{"127.0.0.1:8000", unix.SOCK_DGRAM, tcp("127.0.0.1:8000", false), noMatch},
		// Unix sockets: the same path.
		{"unix:/run/app.sock", unix.SOCK_STREAM, sock("/run/app.sock"), exact},
		{"unix:@app", unix.SOCK_STREAM, sock("@app"), exact},
		{"unix:/run/other.sock", unix.SOCK_STREAM, sock("/run/app.sock"), noMatch},
		{"unix:", unix.SOCK_STREAM, sock("/run/app.sock"), noMatch},
		{"unix:/run/app.sock", unix.SOCK_STREAM, tcp("127.0.0.1:8000", false), noMatch},
	} {
		var asked sockAddr
		if p, ok := cutUnix(tc.asked); ok {
			asked = sockAddr{family: unix.AF_UNIX, path: p}
		} else {
			asked = inet(tc.asked)
		}
		if got := fit(asked, tc.typ, tc.t); got != tc.want {
			t.Errorf("fit(%s, type %d, %s v6only=%v) = %d, want %d", tc.asked, tc.typ, tc.t.addr, tc.t.v6only, got, tc.want)
		}
	}
}

func cutUnix(s string) (string, bool) {
	if len(s) >= 5 && s[:5] == "unix:" {
		return s[5:], true
	}
	return "", false
}

func TestMatchPrefersTheSameFamily(t *testing.T) {
	targets := []*target{
		{typ: unix.SOCK_STREAM, addr: inet("[::]:8000")},
		{typ: unix.SOCK_STREAM, addr: inet("0.0.0.0:8000")},
		{typ: unix.SOCK_DGRAM, addr: inet("0.0.0.0:8000")},
	}
	for _, tc := range []struct {
		asked string
		typ   int
		want  int
	}{
		{"0.0.0.0:8000", unix.SOCK_STREAM, 1},
		{"127.0.0.1:8000", unix.SOCK_STREAM, 1},
		{"[::]:8000", unix.SOCK_STREAM, 0},
		{"[::1]:8000", unix.SOCK_STREAM, 0},
		{"0.0.0.0:8000", unix.SOCK_DGRAM, 2},
		{"0.0.0.0:9000", unix.SOCK_STREAM, -1},
	} {
		if got := match(inet(tc.asked), tc.typ, targets); got != tc.want {
			t.Errorf("match(%s, type %d) = %d, want %d", tc.asked, tc.typ, got, tc.want)
		}
	}
}

func TestParseSockaddr(t *testing.T) {
	in4 := make([]byte, unix.SizeofSockaddrInet4)
	binary.NativeEndian.PutUint16(in4, unix.AF_INET)
	binary.BigEndian.PutUint16(in4[2:], 8000)
	copy(in4[4:], []byte{127, 0, 0, 1})
	in6 := make([]byte, unix.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(in6, unix.AF_INET6)
	binary.BigEndian.PutUint16(in6[2:], 443)
	in6[23] = 1 // ::1
	un := append(binary.NativeEndian.AppendUint16(nil, unix.AF_UNIX), "/run/app.sock\x00junk"...)
	abstract := append(binary.NativeEndian.AppendUint16(nil, unix.AF_UNIX), "\x00name"...)
	unnamed := binary.NativeEndian.AppendUint16(nil, unix.AF_UNIX)
	for _, tc := range []struct {
		b    []byte
		want string
	}{
		{in4, "127.0.0.1:8000"},
		{in6, "[::1]:443"},
		{un, "/run/app.sock"},
		{abstract, "@name"},
		{unnamed, "an unnamed unix socket"},
	} {
		a, err := parseSockaddr(tc.b)
		if err != nil || a.String() != tc.want {
			t.Errorf("parseSockaddr(% x) = %v, %v, want %s", tc.b, a, err, tc.want)
		}
	}
	for _, b := range [][]byte{nil, {2}, in4[:8], in6[:20], binary.NativeEndian.AppendUint16(nil, unix.AF_NETLINK)} {
		if a, err := parseSockaddr(b); err == nil {
			t.Errorf("parseSockaddr(% x) = %v, want an error", b, a)
		}
	}
}

// The structures' sizes are those the ioctl numbers encode (bits 16–29).
func TestNotificationStructSizes(t *testing.T) {
	size := func(req uint) uintptr { return uintptr(req>>16) & 0x3fff }
	for _, tc := range []struct {
		name string
		got  uintptr
		req  uint
	}{
		{"seccomp_notif", unsafe.Sizeof(seccompNotif{}), unix.SECCOMP_IOCTL_NOTIF_RECV},
		{"seccomp_notif_resp", unsafe.Sizeof(seccompNotifResp{}), unix.SECCOMP_IOCTL_NOTIF_SEND},
		{"seccomp_notif_addfd", unsafe.Sizeof(seccompNotifAddfd{}), unix.SECCOMP_IOCTL_NOTIF_ADDFD},
	} {
		if tc.got != size(tc.req) {
			t.Errorf("%s: %d bytes, the ioctl says %d", tc.name, tc.got, size(tc.req))
		}
	}
}

// Every jump of the filter lands inside it, and every path ends in a
// return: what the kernel's checker also demands.
func TestProgramShape(t *testing.T) {
	arch, err := auditArch()
	if err != nil {
		t.Skip(err)
	}
	p := program(arch)
	for i, ins := range p {
		switch ins.Code & 0x07 {
		case unix.BPF_JMP:
			for _, off := range []uint8{ins.Jt, ins.Jf} {
				if i+1+int(off) >= len(p) {
					t.Errorf("instruction %d jumps out of the program", i)
				}
			}
		case unix.BPF_RET:
		default:
			if i == len(p)-1 {
				t.Errorf("the last instruction is no return")
			}
		}
	}
	if last := p[len(p)-1]; last.K != unix.SECCOMP_RET_USER_NOTIF || p[len(p)-2].K != unix.SECCOMP_RET_ALLOW {
		t.Errorf("the program ends %v, %v: want ALLOW, USER_NOTIF", p[len(p)-2], last)
	}
}

func TestResolvePath(t *testing.T) {
	for _, tc := range []struct{ path, cwd, want string }{
		{"app.sock", "/srv/app", "/srv/app/app.sock"},
		{"./run/../app.sock", "/srv", "/srv/app.sock"},
		{"/run/./app.sock", "/ignored", "/run/app.sock"},
		{"@abstract", "/srv", "@abstract"},
		{"", "/srv", ""},
	} {
		if got := resolvePath(tc.path, tc.cwd); got != tc.want {
			t.Errorf("resolvePath(%q, %q) = %q, want %q", tc.path, tc.cwd, got, tc.want)
		}
	}
}
