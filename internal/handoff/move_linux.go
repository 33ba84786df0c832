package handoff

import (
	"errors"

	"github.com/hotcluster/hotcluster/internal/reuseport"
)

// slotSock is the socket of slot for index k, nil if it was never made.
func (l *listener) slotSock(k, slot int) *sock {
	if slot == 0 || !l.perSlot() {
		if k < len(l.socks) {
			return l.socks[k]
		}
		return nil
	}
	return l.extra[[2]int{k, slot}]
}

// steerRefs points the slot table at one socket per slot, each {index,
// slot}, in order (a rolling reload: some slots on one generation's
// sockets, the others on another's).
func (l *listener) steerRefs(refs [][2]int) error {
	e, ok := l.sel.(*ebpfSel)
	if !ok || !l.perSlot() {
		return ErrNoSlots
	}
	if len(refs) == 0 {
		return errors.New("handoff: steer to no slot")
	}
	keys := make([]int, len(refs))
	for i, r := range refs {
		keys[i] = reuseport.SlotKey(r[0], r[1])
	}
	return e.sel.SteerSlots(keys)
}
