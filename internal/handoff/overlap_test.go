package handoff

import (
	"net/netip"
	"testing"
)

func TestOverlaps(t *testing.T) {
	b := func(s string, v6only bool) bound { return bound{addr: netip.MustParseAddr(s), v6only: v6only} }
	for _, tt := range []struct {
		name           string
		ours, theirs   bound
		overlap, group bool
		take           bool
	}{
		{"same IPv4 address", b("127.0.0.1", false), b("127.0.0.1", false), true, true, false},
		{"other IPv4 address", b("127.0.0.1", false), b("127.0.0.2", false), false, false, false},
		{"IPv4 wildcard around ours", b("127.0.0.1", false), b("0.0.0.0", false), true, false, false},
		{"specific IPv4 inside our wildcard", b("0.0.0.0", false), b("127.0.0.1", false), true, false, true},
		{"both IPv4 wildcards", b("0.0.0.0", false), b("0.0.0.0", false), true, true, false},
		{"dual-stack [::] and IPv4 wildcard", b("::", false), b("0.0.0.0", false), true, false, true},
		{"IPv4 wildcard of ours, dual-stack theirs", b("0.0.0.0", false), b("::", false), true, false, false},
		{"IPv4 of ours, IPv6-only [::] theirs", b("0.0.0.0", false), b("::", true), false, false, false},
		{"IPv6-only [::] of ours, IPv4 theirs", b("::", true), b("127.0.0.1", false), false, false, false},
		{"dual-stack of ours, specific IPv4", b("::", false), b("127.0.0.1", false), true, false, true},
		{"[::1] of ours, dual-stack theirs", b("::1", true), b("::", false), true, false, false},
		{"[::1] of ours, IPv4 wildcard theirs", b("::1", true), b("0.0.0.0", false), false, false, false},
		{"same [::1]", b("::1", true), b("::1", true), true, true, false},
		{"[::1] and [::2]", b("::1", true), b("::2", true), false, false, false},
		{"dual-stack and IPv6-only [::]", b("::", false), b("::", true), true, false, true},
		{"both dual-stack [::]", b("::", false), b("::", false), true, true, false},
		{"v4-mapped theirs, same IPv4", b("127.0.0.1", false), b("::ffff:127.0.0.1", false), true, false, true},
		{"v4-mapped theirs, other IPv4", b("127.0.0.1", false), b("::ffff:127.0.0.2", false), false, false, false},
		{"v4-mapped theirs inside our dual-stack", b("::", false), b("::ffff:10.0.0.1", false), true, false, true},
		{"v4-mapped theirs beside IPv6-only ours", b("::", true), b("::ffff:10.0.0.1", false), false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := overlaps(tt.ours, tt.theirs); got != tt.overlap {
				t.Errorf("overlaps = %v, want %v", got, tt.overlap)
			}
			if got := overlaps(tt.theirs, tt.ours); got != tt.overlap {
				t.Errorf("overlaps is not symmetric: reversed %v, want %v", got, tt.overlap)
			}
			if got := sameGroup(tt.ours, tt.theirs); got != tt.group {
				t.Errorf("sameGroup = %v, want %v", got, tt.group)
			}
			if got := mayTake(tt.ours, tt.theirs); got != tt.take {
				t.Errorf("mayTake = %v, want %v", got, tt.take)
			}
		})
	}
}
