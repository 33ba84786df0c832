package sockdiag

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capturedDump is one datagram of a real AF_INET6 dump (Linux 6.18, x86-64,
// sequence number 2): a connection on [::1]:33409 that had received 8 bytes,
// 3 of them unread. Its attributes are INET_DIAG_SHUTDOWN, INET_DIAG_MARK
// (the capture ran as root), INET_DIAG_CGROUP_ID, INET_DIAG_SOCKOPT and
// INET_DIAG_INFO with a 280-byte struct tcp_info.
const capturedDump = "" +
	"9801000014000200020000004e2d00000a0102008281ad3e000000000000000000000000000000010000000000000000" +
	"0000000000000001000000000310000000000000983a0000030000000000000000000000923e01000500080000000000" +
	"08000f00000000000c001500010000000000000006001600120000001c010200010000000007aa01e01c0300409c0000" +
	"008000001802000000000000000000000000000000000000000000000000000000000000000000000000000000000100" +
	"b8ff00002000000010000000ffffff7f0a000000b8ff00000300000000000000b8ff000000000000804e4bd006000000" +
	"ffffffffffffffff00000000000000000800000000000000020000000400000000000000200000000200000000000000" +
	"000000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000" +
	"000000000000000000000000000000000000000000000100000001000000000000000000000000000000000000000000" +
	"000000000000000000000000000000000000000000000000"

// msg builds one netlink message of type typ around payload.
func msg(typ uint16, seq uint32, payload []byte) []byte {
	b := native.AppendUint32(nil, uint32(nlmsgHdrLen+len(payload)))
	b = native.AppendUint16(b, typ)
	b = native.AppendUint16(b, unix.NLM_F_MULTI)
	b = native.AppendUint32(b, seq)
	b = native.AppendUint32(b, 4242)
	b = append(b, payload...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// diag builds struct inet_diag_msg for c followed by attrs.
func diag(c Conn, attrs ...[]byte) []byte {
	b := make([]byte, diagMsgLen)
	if c.Local.Addr().Is4() {
		b[offFamily] = unix.AF_INET
		a, r := c.Local.Addr().As4(), c.Remote.Addr().As4()
		copy(b[offSrc:], a[:])
		copy(b[offDst:], r[:])
	} else {
		b[offFamily] = unix.AF_INET6
		a, r := c.Local.Addr().As16(), c.Remote.Addr().As16()
		copy(b[offSrc:], a[:])
		copy(b[offDst:], r[:])
	}
	b[offState] = byte(c.State)
	binary.BigEndian.PutUint16(b[offSport:], c.Local.Port())
	binary.BigEndian.PutUint16(b[offDport:], c.Remote.Port())
	native.PutUint32(b[offCookie:], uint32(c.Cookie))
	native.PutUint32(b[offCookie+4:], uint32(c.Cookie>>32))
	native.PutUint32(b[offRqueue:], c.RxQueue)
	native.PutUint32(b[offWqueue:], c.TxQueue)
	native.PutUint32(b[offInode:], c.Inode)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

// attr builds one rtattr.
func attr(typ uint16, payload []byte) []byte {
	b := native.AppendUint16(nil, uint16(rtattrLen+len(payload)))
	b = native.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// tcpInfo builds a struct tcp_info of size n with tcpi_bytes_received set
// where it fits.
func tcpInfo(n int, bytesReceived uint64) []byte {
	b := make([]byte, n)
	if n >= offBytesReceived+8 {
		native.PutUint64(b[offBytesReceived:], bytesReceived)
	}
	return b
}

func errnoPayload(errno unix.Errno) []byte {
	return native.AppendUint32(nil, uint32(-int32(errno)))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseDump(t *testing.T) {
	est := Conn{
		Local:         netip.MustParseAddrPort("127.0.0.1:8080"),
		Remote:        netip.MustParseAddrPort("127.0.0.1:40000"),
		State:         Established,
		RxQueue:       5,
		TxQueue:       7,
		BytesReceived: 5,
		Inode:         1234,
		Cookie:        0x1_0000_0002,
	}
	est6 := Conn{
		Local:         netip.MustParseAddrPort("[2001:db8::1]:8080"),
		Remote:        netip.MustParseAddrPort("[::ffff:10.0.0.1]:40001"),
		State:         CloseWait,
		BytesReceived: 1 << 40,
		Inode:         99,
		Cookie:        3,
	}
	listen := Conn{
		Local:   netip.MustParseAddrPort("[::]:8080"),
		Remote:  netip.MustParseAddrPort("[::]:0"),
		State:   Listen,
		RxQueue: 2,
		TxQueue: 4096,
		Inode:   77,
		Cookie:  1,
	}
	synRecv := Conn{
		Local:  netip.MustParseAddrPort("127.0.0.1:8080"),
		Remote: netip.MustParseAddrPort("127.0.0.1:40002"),
		State:  SynRecv,
		Cookie: 4,
	}
	listen6Only := listen
	listen6Only.V6Only = true
	short := est
	short.BytesReceived = 0
	otherPort := est
	otherPort.Local = netip.MustParseAddrPort("127.0.0.1:8081")

	fullInfo := func(c Conn) []byte { return attr(inetDiagInfo, tcpInfo(280, c.BytesReceived)) }
	done := msg(unix.NLMSG_DONE, 1, native.AppendUint32(nil, 0))

	tests := []struct {
		name     string
		seq      uint32
		port     uint16
		states   StateSet
		in       []byte
		want     []Conn
		wantDone bool
		wantErr  string       // substring of the error, if any
		wantIs   error        // errors.Is target, if any
		skipOnBE bool         // input is a little-endian capture
		check    func([]Conn) // extra checks
	}{
		{
			name: "established then done", seq: 1, port: 8080, states: AllStates,
			in:   cat(msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est, attr(8, []byte{0}), fullInfo(est))), done),
			want: []Conn{est}, wantDone: true,
		},
		{
			name: "several sockets, more to come", seq: 1, port: 8080, states: AllStates,
			in: cat(
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(listen, fullInfo(listen))),
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est6, fullInfo(est6))),
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(synRecv)),
			),
			want: []Conn{listen, est6, synRecv},
		},
		{
			name: "IPV6_V6ONLY of a listener", seq: 1, port: 8080, states: AllStates,
			in: cat(
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(listen, attr(inetDiagSkV6Only, []byte{0}), fullInfo(listen))),
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(listen6Only, attr(inetDiagSkV6Only, []byte{1}), fullInfo(listen))),
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(listen6Only, attr(inetDiagSkV6Only, nil))),
			),
			want: []Conn{listen, listen6Only, listen},
		},
		{
			name: "tcp_info before Linux 4.1 has no bytes_received", seq: 1, port: 8080, states: AllStates,
			in:   msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est, attr(inetDiagInfo, tcpInfo(104, 0)))),
			want: []Conn{short},
		},
		{
			name: "tcp_info one byte short of bytes_received", seq: 1, port: 8080, states: AllStates,
			in:   msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est, attr(inetDiagInfo, tcpInfo(offBytesReceived+7, 0)))),
			want: []Conn{short},
		},
		{
			name: "nested flag on attribute type is ignored", seq: 1, port: 8080, states: AllStates,
			in:   msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est, attr(inetDiagInfo|unix.NLA_F_NESTED, tcpInfo(280, 5)))),
			want: []Conn{est},
		},
		{
			name: "filters port and state", seq: 1, port: 8080, states: States(Established),
			in: cat(
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(otherPort, fullInfo(otherPort))),
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(listen, fullInfo(listen))),
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est, fullInfo(est))),
				done,
			),
			want: []Conn{est}, wantDone: true,
		},
		{
			name: "skips other sequence numbers", seq: 2, port: 8080, states: AllStates,
			in: cat(
				msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est6, fullInfo(est6))),
				done,
				msg(unix.SOCK_DIAG_BY_FAMILY, 2, diag(est, fullInfo(est))),
			),
			want: []Conn{est},
		},
		{
			name: "done without payload", seq: 1, port: 8080, states: AllStates,
			in:       msg(unix.NLMSG_DONE, 1, nil),
			wantDone: true,
		},
		{
			name: "done carrying an error", seq: 1, port: 8080, states: AllStates,
			in:       cat(msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est, fullInfo(est))), msg(unix.NLMSG_DONE, 1, errnoPayload(unix.ENOBUFS))),
			want:     []Conn{est},
			wantDone: true, wantIs: unix.ENOBUFS,
		},
		{
			name: "netlink error", seq: 1, port: 8080, states: AllStates,
			in:       msg(unix.NLMSG_ERROR, 1, append(errnoPayload(unix.EINVAL), make([]byte, nlmsgHdrLen)...)),
			wantDone: true, wantIs: unix.EINVAL,
		},
		{
			name: "acknowledgement is not an error", seq: 1, port: 8080, states: AllStates,
			in: msg(unix.NLMSG_ERROR, 1, make([]byte, 4+nlmsgHdrLen)),
		},
		{
			name: "short netlink error", seq: 1, port: 8080, states: AllStates,
			in:       msg(unix.NLMSG_ERROR, 1, []byte{1, 2}),
			wantDone: true, wantErr: "short netlink error",
		},
		{
			name: "short header", seq: 1, port: 8080, states: AllStates,
			in:      make([]byte, 8),
			wantErr: "short netlink header",
		},
		{
			name: "message longer than datagram", seq: 1, port: 8080, states: AllStates,
			in:      msg(unix.SOCK_DIAG_BY_FAMILY, 1, diag(est))[:nlmsgHdrLen+diagMsgLen-4],
			wantErr: "bad netlink message length",
		},
		{
			name: "short inet_diag_msg", seq: 1, port: 8080, states: AllStates,
			in:      msg(unix.SOCK_DIAG_BY_FAMILY, 1, make([]byte, diagMsgLen-4)),
			wantErr: "short inet_diag_msg",
		},
		{
			name: "unknown address family", seq: 1, port: 8080, states: AllStates,
			in:      msg(unix.SOCK_DIAG_BY_FAMILY, 1, make([]byte, diagMsgLen)),
			wantErr: "address family 0",
		},
		{
			name: "attribute longer than message", seq: 1, port: 8080, states: AllStates,
			in: msg(unix.SOCK_DIAG_BY_FAMILY, 1,
				diag(est, native.AppendUint32(nil, uint32(inetDiagInfo)<<16|400))),
			wantErr: "bad attribute length",
		},
		{
			name: "captured from Linux 6.18", seq: 2, port: 33409, states: States(Established),
			in:       mustHex(capturedDump),
			skipOnBE: true,
			want: []Conn{{
				Local:         netip.MustParseAddrPort("[::1]:33409"),
				Remote:        netip.MustParseAddrPort("[::1]:44350"),
				State:         Established,
				RxQueue:       3,
				BytesReceived: 8,
				Inode:         81554,
				Cookie:        4099,
			}},
		},
	}
	littleEndian := native.Uint16([]byte{1, 0}) == 1
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skipOnBE && !littleEndian {
				t.Skip("the capture is little-endian")
			}
			got, gotDone, err := parseDump(tt.in, tt.seq, tt.port, tt.states, nil)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Fatalf("error = %v, want %v", err, tt.wantIs)
			case tt.wantErr == "" && tt.wantIs == nil && err != nil:
				t.Fatalf("error = %v", err)
			}
			if tt.wantErr != "" {
				return
			}
			if gotDone != tt.wantDone {
				t.Errorf("done = %v, want %v", gotDone, tt.wantDone)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d sockets, want %d:\n got %+v\nwant %+v", len(got), len(tt.want), got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("socket %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestDumpRequest(t *testing.T) {
	got := appendDumpRequest(nil, 9, unix.AF_INET6, unix.IPPROTO_TCP, 0x1f90, States(Established, Listen))
	want := dumpRequest(9, unix.AF_INET6, unix.IPPROTO_TCP, 1<<1, 1<<1|1<<10)
	if !bytes.Equal(got, want) {
		t.Fatalf("TCP request\n got %x\nwant %x", got, want)
	}
	// UDP sockets carry no tcp_info: nothing extra is asked for.
	got = appendDumpRequest(nil, 3, unix.AF_INET, unix.IPPROTO_UDP, 0x1f90, States(Close, Established))
	want = dumpRequest(3, unix.AF_INET, unix.IPPROTO_UDP, 0, 1<<1|1<<7)
	if !bytes.Equal(got, want) {
		t.Fatalf("UDP request\n got %x\nwant %x", got, want)
	}
}

// dumpRequest spells out a request for port 0x1f90 field by field.
func dumpRequest(seq uint32, family, proto, ext uint8, states uint32) []byte {
	return cat(
		native.AppendUint32(nil, 72),
		native.AppendUint16(nil, unix.SOCK_DIAG_BY_FAMILY),
		native.AppendUint16(nil, unix.NLM_F_REQUEST|unix.NLM_F_DUMP),
		native.AppendUint32(nil, seq),
		native.AppendUint32(nil, 0),
		[]byte{family, proto, ext, 0},
		native.AppendUint32(nil, states),
		[]byte{0x1f, 0x90}, // idiag_sport, big-endian
		make([]byte, 46))   // dport, src, dst, if, cookie
}

// TestLayout checks the hand-written offsets against the C structs as
// golang.org/x/sys/unix lays them out.
func TestLayout(t *testing.T) {
	var info unix.TCPInfo
	checks := []struct {
		name      string
		got, want uintptr
	}{
		{"inet_diag_req_v2 size", reqV2Len, 56},
		{"inet_diag_msg size", diagMsgLen, 72},
		{"tcpi_bytes_received offset", offBytesReceived, unsafe.Offsetof(info.Bytes_received)},
		{"tcpi_unacked offset", 24, unsafe.Offsetof(info.Unacked)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}
