package master

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hotcluster/hotcluster/workers"
)

// ErrRolloutNeedsSlots is wrapped by the error New returns for a --rollout
// that the listeners cannot do: the command line's fault (exit 2).
var ErrRolloutNeedsSlots = errors.New("master: --rollout needs a socket per worker slot")

// checkRollout refuses a rolling reload where a listener has one socket for
// all the workers of a generation (a unix socket, --handoff shared,
// classic BPF without CAP_BPF, a systemd socket the group cannot grow).
// There the traffic cannot move a slot at a time: both generations would
// accept from one queue, and an old worker told to stop loses what it
// accepted just before (golang/go#75591), which is what moving the traffic
// in the kernel avoids. A rollout with both generations on one socket would
// trade that guarantee for memory; the master refuses instead, and says
// what works.
func (m *Master) checkRollout(r workers.Rollout) error {
	if r == (workers.Rollout{}) || r.Percent >= 100 || m.socks == nil {
		return nil
	}
	for _, l := range m.socks.Listeners() {
		if l.PerSlot {
			continue
		}
		why := l.Why
		if why == "" {
			why = "its selector has no slot table"
		}
		return &rolloutError{fmt.Sprintf("--rollout %s: listener %s (%s) has one socket for all of a generation's workers (%s), so its traffic cannot move a slot at a time; use --rollout all (the default), or TCP/UDP listeners with the eBPF selector (root or CAP_BPF)", r, l.Spec.Name, l.Addr, why)}
	}
	return nil
}

// rolloutError is a --rollout refused; it is ErrRolloutNeedsSlots.
type rolloutError struct{ msg string }

func (e *rolloutError) Error() string        { return e.msg }
func (e *rolloutError) Is(target error) bool { return target == ErrRolloutNeedsSlots }

// rollingNow refuses an upgrade (SIGUSR2) during a rolling reload: what
// crosses to the new master says which generation holds which socket, not
// which slots moved, and the new master replaces every worker anyway.
// Refusing is immediate and says so (hotcluster upgrade reports it); to
// wait would hold the upgrade for as long as the rollout takes.
func (m *Master) rollingNow() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := m.pool.Status(ctx)
	if err != nil || st.Rollout == nil {
		return nil
	}
	return fmt.Errorf("upgrade: a rolling reload is in progress (%s, gen %d); upgrade once it has ended (hotcluster reload waits for it)", st.Rollout, st.Rollout.Gen)
}
