package rescue

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// RelaysFile names, among the files a binary upgrade passes on, the socket
// over which the old master hands its relays to the new one.
const RelaysFile = "hotcluster-relays"

// Store keeps files for the master an upgrade starts (package upgrade).
type Store interface {
	AddFile(name string, f *os.File) error
}

// handoverWait bounds the write of one relay to the successor.
const handoverWait = 5 * time.Second

// handoverMsg is the payload of one relay handed over; its two descriptors
// (client, upstream) travel as SCM_RIGHTS.
type handoverMsg struct {
	Listener string `json:"listener"`
	C2UEnded bool   `json:"c2u_ended,omitempty"`
	U2CEnded bool   `json:"u2c_ended,omitempty"`
}

// PrepareSuccessor is called when a binary upgrade begins: it makes the
// channel to the new master and puts the new master's end in st. The relays
// go over it when this master ends, once HandedOver said the new one
// serves; SuccessorFailed forgets it.
//
// Relays, rather than sockets, are what crosses: a relay lives as long as
// its client keeps the connection (a proxy's upstream keep-alive pool keeps
// it for good), while an old master that waited for them would never exit,
// and tableflip refuses the next upgrade while it lives.
func (rs *Rescuer) PrepareSuccessor(st Store) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rescue: socket pair for the new master: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), RelaysFile), os.NewFile(uintptr(fds[1]), RelaysFile)
	defer theirs.Close()
	if err := st.AddFile(RelaysFile, theirs); err != nil {
		ours.Close()
		return fmt.Errorf("rescue: pass the relays' socket on: %w", err)
	}
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return fmt.Errorf("rescue: relays' socket: %w", err)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.successor != nil {
		rs.successor.Close()
	}
	rs.successor, rs.handedOver = c.(*net.UnixConn), false
	return nil
}

// SuccessorFailed forgets the channel of an upgrade that failed.
func (rs *Rescuer) SuccessorFailed() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.successor != nil {
		rs.successor.Close()
		rs.successor = nil
	}
}

// HandedOver tells that the new master serves: this master's relays go to
// it when Run ends.
func (rs *Rescuer) HandedOver() {
	rs.mu.Lock()
	rs.handedOver = true
	rs.mu.Unlock()
}

// takeSuccessor returns the channel to a new master that serves, if any.
func (rs *Rescuer) takeSuccessor() *net.UnixConn {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	s := rs.successor
	rs.successor = nil
	if s != nil && !rs.handedOver {
		s.Close()
		return nil
	}
	return s
}

// Adopt, called before Run by a master an upgrade started, takes f, the
// previous master's end of the relays' channel (RelaysFile): Run relays
// whatever comes over it.
func (rs *Rescuer) Adopt(f *os.File) error {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("rescue: relays' socket from the previous master: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return fmt.Errorf("rescue: relays' socket from the previous master is not a unix socket")
	}
	rs.mu.Lock()
	rs.predecessor = uc
	rs.mu.Unlock()
	return nil
}

func (rs *Rescuer) takePredecessor() *net.UnixConn {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.predecessor
}

// handTo sends a suspended relay to the successor, or resets it if that
// fails; the master's copies are closed either way.
func (rs *Rescuer) handTo(c *net.UnixConn, s *suspended) {
	payload, _ := json.Marshal(handoverMsg{Listener: s.r.l.Name, C2UEnded: s.c2uEnded, U2CEnded: s.u2cEnded})
	var err error
	c.SetWriteDeadline(time.Now().Add(handoverWait))
	cerr := connFD(s.client, func(cfd int) {
		connFD(s.up, func(ufd int) {
			_, _, err = c.WriteMsgUnix(payload, unix.UnixRights(cfd, ufd), nil)
		})
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		rs.log.Warn(fmt.Sprintf("rescue: hand a relay of %s to the new master: %v; reset", s.r.l.Name, err))
		resetConn(s.client)
		resetConn(s.up)
		rs.resets.Add(1)
		return
	}
	s.client.Close()
	s.up.Close()
}

// adoptFrom reads relays from the previous master until it closes its end.
func (rs *Rescuer) adoptFrom(p *net.UnixConn) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(2*4))
	for {
		n, oobn, flags, _, err := p.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 && oobn == 0 {
			return
		}
		var fds []int
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if rights, err := unix.ParseUnixRights(&cm); err == nil {
					fds = append(fds, rights...)
				}
			}
		}
		var msg handoverMsg
		if len(fds) != 2 || flags&unix.MSG_CTRUNC != 0 || json.Unmarshal(buf[:n], &msg) != nil {
			for _, fd := range fds {
				resetFD(fd)
			}
			continue
		}
		client, err1 := adoptFD(fds[0])
		up, err2 := adoptFD(fds[1])
		if err1 != nil || err2 != nil {
			for _, c := range []*net.TCPConn{client, up} {
				if c != nil {
					resetConn(c)
				}
			}
			continue
		}
		l := rs.byName[msg.Listener]
		if l == nil {
			// A listener this master does not know: redial where the
			// upstream connects.
			ap := netip.AddrPort{}
			if a, ok := up.RemoteAddr().(*net.TCPAddr); ok {
				ap = a.AddrPort()
			}
			l = &Listener{Name: msg.Listener, Addr: ap, Mode: HTTP}
		}
		s := &suspended{r: &relay{l: l}, client: client, up: up, c2uEnded: msg.C2UEnded, u2cEnded: msg.U2CEnded}
		select {
		case rs.adoptC <- s:
		case <-rs.quit:
			resetConn(client)
			resetConn(up)
			return
		}
	}
}

// adopt relays what a previous master handed over.
func (rs *Rescuer) adopt(s *suspended) {
	if !rs.reserve() {
		rs.atMax("a relay from the previous master is reset")
		resetConn(s.client)
		resetConn(s.up)
		rs.resets.Add(1)
		return
	}
	r := newRelay(rs, s.r.l, kindAdopted, s.client, s.up)
	r.c2uEnded, r.u2cEnded = s.c2uEnded, s.u2cEnded
	rs.adopted.Add(1)
	rs.start(r)
}
