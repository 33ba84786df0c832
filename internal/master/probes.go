package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hotcluster/hotcluster/internal/health"
	"github.com/hotcluster/hotcluster/workers"
)

// live is /livez: the pool's loop answers. A pool that has stopped is no
// stuck master: it is on its way out.
func (m *Master) live(ctx context.Context) error {
	_, err := m.pool.Status(ctx)
	if err == nil || errors.Is(err, workers.ErrStopped) {
		return nil
	}
	return health.Stuck(err)
}

// ready is /readyz: a generation serves (a reload under way included) and
// no stop was asked for.
func (m *Master) ready(ctx context.Context) error {
	if m.stopping.Load() {
		return errors.New("not ready: stopping")
	}
	st, err := m.pool.Status(ctx)
	if errors.Is(err, workers.ErrStopped) {
		return errors.New("not ready: stopped")
	}
	if err != nil {
		return fmt.Errorf("not ready: %w", health.Stuck(err))
	}
	switch st.State {
	case workers.StateServing, workers.StateDegraded:
		return nil
	case workers.StateStarting:
		return errors.New("not ready: no generation serves yet")
	case workers.StateErrored:
		return fmt.Errorf("not ready: errored: every worker of gen %d was given up", st.Current)
	}
	return fmt.Errorf("not ready: %s", st.State)
}

// shutdownDelay is the --shutdown-delay under way, if any: a timer that
// the first stop signal starts and any later stop cancels. Safe from any
// goroutine.
type shutdownDelay struct {
	mu sync.Mutex
	t  *time.Timer
}

// start calls then after d, unless cancelled; a delay already under way
// stays.
func (s *shutdownDelay) start(d time.Duration, then func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t == nil {
		s.t = time.AfterFunc(d, then)
	}
}

// cancel stops the timer if it has not fired.
func (s *shutdownDelay) cancel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t != nil {
		s.t.Stop()
	}
}
