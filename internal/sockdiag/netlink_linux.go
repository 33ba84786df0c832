package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Layout of the kernel's inet_diag messages (include/uapi/linux/inet_diag.h
// and sock_diag.h). golang.org/x/sys/unix has no types for them, so they are
// encoded by hand. Fields are in host byte order except ports and addresses,
// which are in network byte order.
const (
	// struct inet_diag_req_v2: family, protocol, ext, pad (1 byte each),
	// states (u32), then struct inet_diag_sockid.
	reqV2Len = 4 + 4 + sockIDLen

	// struct inet_diag_sockid: sport, dport (be16), src[4], dst[4] (be32),
	// if (u32), cookie[2] (u32).
	sockIDLen = 2 + 2 + 16 + 16 + 4 + 8

	// struct inet_diag_msg: family, state, timer, retrans (1 byte each),
	// struct inet_diag_sockid, expires, rqueue, wqueue, uid, inode (u32).
	diagMsgLen = 4 + sockIDLen + 5*4

	// Offsets into struct inet_diag_msg.
	offFamily = 0
	offState  = 1
	offSport  = 4
	offDport  = 6
	offSrc    = 8
	offDst    = 24
	offCookie = 44
	offRqueue = 56
	offWqueue = 60
	offInode  = 68

	// inetDiagInfo is the INET_DIAG_INFO attribute, which carries struct
	// tcp_info for TCP sockets. idiag_ext asks for attribute n with bit n-1.
	inetDiagInfo = 2

	// inetDiagSkV6Only is the INET_DIAG_SKV6ONLY attribute (a u8, the
	// socket's IPV6_V6ONLY), which the kernel adds to every AF_INET6 socket
	// unasked (inet_diag_msg_attrs_fill, since Linux 3.12).
	inetDiagSkV6Only = 11

	// offBytesReceived is the offset of tcpi_bytes_received in struct
	// tcp_info: 8 bytes of u8 fields, 24 u32 fields (tcpi_rto to
	// tcpi_total_retrans), then tcpi_pacing_rate, tcpi_max_pacing_rate and
	// tcpi_bytes_acked (u64). The field arrived in Linux 4.1; older kernels
	// send a shorter struct. The test checks it against unix.TCPInfo.
	offBytesReceived = 8 + 24*4 + 3*8

	nlmsgHdrLen = unix.SizeofNlMsghdr
	rtattrLen   = unix.SizeofRtAttr
)

var native = binary.NativeEndian

// appendDumpRequest appends a SOCK_DIAG_BY_FAMILY dump request for the
// sockets of one address family, protocol (IPPROTO_TCP or IPPROTO_UDP),
// local port and set of states.
func appendDumpRequest(b []byte, seq uint32, family, proto uint8, port uint16, states StateSet) []byte {
	b = native.AppendUint32(b, nlmsgHdrLen+reqV2Len)
	b = native.AppendUint16(b, unix.SOCK_DIAG_BY_FAMILY)
	b = native.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	b = native.AppendUint32(b, seq)
	b = native.AppendUint32(b, 0) // port ID: the kernel fills it in
	var ext uint8
	if proto == unix.IPPROTO_TCP {
		ext = 1 << (inetDiagInfo - 1)
	}
	b = append(b, family, proto, ext, 0)
	b = native.AppendUint32(b, uint32(states))
	b = binary.BigEndian.AppendUint16(b, port) // idiag_sport
	return append(b, make([]byte, sockIDLen-2)...)
}

// parseDump appends to conns the sockets described by the netlink messages in
// b, which holds the bytes of one recvmsg call, and reports whether the dump
// is complete. It skips messages of other sequence numbers and sockets whose
// local port or state does not match.
func parseDump(b []byte, seq uint32, port uint16, states StateSet, conns []Conn) ([]Conn, bool, error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return conns, false, fmt.Errorf("short netlink header: %d bytes", len(b))
		}
		n := int(native.Uint32(b[0:4]))
		typ := native.Uint16(b[4:6])
		if n < nlmsgHdrLen || n > len(b) {
			return conns, false, fmt.Errorf("bad netlink message length %d with %d bytes left", n, len(b))
		}
		msg := b[nlmsgHdrLen:n]
		msgSeq := native.Uint32(b[8:12])
		b = b[min(nlmsgAlign(n), len(b)):]
		if msgSeq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_DONE:
			// A dump that fails part-way ends with NLMSG_DONE carrying a
			// negative errno.
			if len(msg) >= 4 {
				if errno := int32(native.Uint32(msg)); errno < 0 {
					return conns, true, unix.Errno(-errno)
				}
			}
			return conns, true, nil
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return conns, true, fmt.Errorf("short netlink error message: %d bytes", len(msg))
			}
			if errno := int32(native.Uint32(msg)); errno < 0 {
				return conns, true, unix.Errno(-errno)
			}
			// An acknowledgement (errno 0); dumps do not ask for one.
		case unix.SOCK_DIAG_BY_FAMILY:
			c, err := parseDiagMsg(msg)
			if err != nil {
				return conns, false, err
			}
			if c.Local.Port() == port && states.Has(c.State) {
				conns = append(conns, c)
			}
		case unix.NLMSG_OVERRUN:
			return conns, true, errors.New("netlink overrun")
		}
	}
	return conns, false, nil
}

// parseDiagMsg decodes struct inet_diag_msg and its attributes.
func parseDiagMsg(b []byte) (Conn, error) {
	var c Conn
	if len(b) < diagMsgLen {
		return c, fmt.Errorf("short inet_diag_msg: %d bytes", len(b))
	}
	var local, remote netip.Addr
	switch b[offFamily] {
	case unix.AF_INET:
		local = netip.AddrFrom4([4]byte(b[offSrc : offSrc+4]))
		remote = netip.AddrFrom4([4]byte(b[offDst : offDst+4]))
	case unix.AF_INET6:
		local = netip.AddrFrom16([16]byte(b[offSrc : offSrc+16]))
		remote = netip.AddrFrom16([16]byte(b[offDst : offDst+16]))
	default:
		return c, fmt.Errorf("inet_diag_msg with address family %d", b[offFamily])
	}
	c.Local = netip.AddrPortFrom(local, binary.BigEndian.Uint16(b[offSport:]))
	c.Remote = netip.AddrPortFrom(remote, binary.BigEndian.Uint16(b[offDport:]))
	c.State = State(b[offState])
	// sock_diag_save_cookie stores the low 32 bits in cookie[0].
	c.Cookie = uint64(native.Uint32(b[offCookie:])) | uint64(native.Uint32(b[offCookie+4:]))<<32
	c.RxQueue = native.Uint32(b[offRqueue:])
	c.TxQueue = native.Uint32(b[offWqueue:])
	c.Inode = native.Uint32(b[offInode:])

	attrs := b[diagMsgLen:]
	for len(attrs) >= rtattrLen {
		n := int(native.Uint16(attrs[0:2]))
		typ := native.Uint16(attrs[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if n < rtattrLen || n > len(attrs) {
			return c, fmt.Errorf("bad attribute length %d with %d bytes left", n, len(attrs))
		}
		switch typ {
		case inetDiagInfo:
			info := attrs[rtattrLen:n]
			if len(info) >= offBytesReceived+8 {
				c.BytesReceived = native.Uint64(info[offBytesReceived:])
			}
		case inetDiagSkV6Only:
			if n > rtattrLen {
				c.V6Only = attrs[rtattrLen] != 0
			}
		}
		attrs = attrs[min(rtaAlign(n), len(attrs)):]
	}
	return c, nil
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }
