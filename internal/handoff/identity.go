package handoff

import "fmt"

// Inodes returns, for the worker in slot of generation gen, the inode of
// each listener's socket as [Sockets.Files] hands it out, in order: what
// /proc/PID/fd shows as socket:[INODE] in a worker that still holds it. A
// generation or slot that holds no sockets yet gets 0 for its steered
// listeners.
func (s *Sockets) Inodes(gen uint64, slot int) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.holders[gen]
	out := make([]uint64, len(s.ls))
	for i, l := range s.ls {
		j := 0
		if l.mode == Steered {
			if !ok {
				continue
			}
			j = k
		}
		if j >= len(l.socks) {
			continue
		}
		so := l.socks[j]
		if ss := sockSlot(slot); ss > 0 && l.perSlot() {
			if so = l.extra[[2]int{j, ss}]; so == nil {
				continue
			}
		}
		out[i] = sockInode(so.rc)
	}
	return out
}

// Describe names each listener as NAME=ADDR, in order, for messages.
func (s *Sockets) Describe() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.ls))
	for i, l := range s.ls {
		out[i] = fmt.Sprintf("%s=%s", l.spec.Name, l.addr)
	}
	return out
}
