package sockdiag

import "testing"

func TestStateSet(t *testing.T) {
	for s := State(0); s < 255; s++ {
		inAll := s >= 1 && s <= 15
		if got := AllStates.Has(s); got != inAll {
			t.Errorf("AllStates.Has(%v) = %v, want %v", s, got, inAll)
		}
		if got := States(s).Has(s); got != (s < 32) {
			t.Errorf("States(%v).Has(%v) = %v", s, s, got)
		}
	}
	if got := States(Established, Listen); got != 1<<1|1<<10 {
		t.Errorf("States(Established, Listen) = %#x, want the kernel's TCPF_ESTABLISHED|TCPF_LISTEN", uint32(got))
	}
	if States(Established).Has(Listen) {
		t.Error("States(Established) has Listen")
	}
	if States() != 0 {
		t.Error("States() is not empty")
	}
}
