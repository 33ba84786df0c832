package sockdiag_test

import (
	"fmt"

	"github.com/hotcluster/hotcluster/internal/sockdiag"
)

func ExampleStates() {
	pending := sockdiag.States(sockdiag.SynRecv, sockdiag.Established, sockdiag.CloseWait)
	for _, s := range []sockdiag.State{sockdiag.SynRecv, sockdiag.Listen, sockdiag.CloseWait, 42} {
		fmt.Println(s, pending.Has(s))
	}
	// Output:
	// SYN_RECV true
	// LISTEN false
	// CLOSE_WAIT true
	// State(42) false
}
