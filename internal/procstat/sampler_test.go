package procstat

import (
	"sync"
	"testing"
	"time"
)

func TestSamplerCPUPercent(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	started := t0.Add(-time.Hour)
	at := func(d time.Duration, cpu time.Duration) Stat {
		return Stat{PID: 7, CPUTime: cpu, Started: started, At: t0.Add(d)}
	}
	var s Sampler
	steps := []struct {
		name string
		now  Stat
		want float64
	}{
		{"first reading", at(0, 3*time.Second), 0},
		{"half a core", at(2*time.Second, 4*time.Second), 50},
		{"too soon keeps the last share", at(2500*time.Millisecond, 5*time.Second), 50},
		{"measured from the last kept reading", at(3*time.Second, 6*time.Second), 200},
		{"older reading than the kept one", at(1*time.Second, 3*time.Second), 200},
		{"idle", at(4*time.Second, 6*time.Second), 0},
		{"reused pid", Stat{PID: 7, CPUTime: 10 * time.Second, Started: t0, At: t0.Add(5 * time.Second)}, 0},
		{"after reuse", Stat{PID: 7, CPUTime: 11 * time.Second, Started: t0, At: t0.Add(6 * time.Second)}, 100},
		{"cpu time going back starts over", Stat{PID: 7, CPUTime: time.Second, Started: t0, At: t0.Add(7 * time.Second)}, 0},
	}
	for _, st := range steps {
		if got := s.CPUPercent(7, st.now); got != st.want {
			t.Errorf("%s: CPUPercent = %v, want %v", st.name, got, st.want)
		}
	}
}

func TestSamplerMinInterval(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := Sampler{MinInterval: 10 * time.Millisecond}
	s.CPUPercent(1, Stat{PID: 1, At: t0})
	if got := s.CPUPercent(1, Stat{PID: 1, CPUTime: 10 * time.Millisecond, At: t0.Add(20 * time.Millisecond)}); got != 50 {
		t.Errorf("CPUPercent = %v, want 50", got)
	}
}

func TestSamplerForget(t *testing.T) {
	t.Parallel()
	var s Sampler
	for pid := 1; pid <= 10; pid++ {
		s.CPUPercent(pid, Stat{PID: pid})
	}
	s.Forget(func(pid int) bool { return pid%2 == 0 })
	if len(s.last) != 5 {
		t.Fatalf("%d processes remembered after Forget, want 5", len(s.last))
	}
	for pid := range s.last {
		if pid%2 != 0 {
			t.Errorf("pid %d still remembered", pid)
		}
	}
}

// TestSamplerConcurrent is for the race detector: a scrape and a status
// request sample and forget at the same time.
func TestSamplerConcurrent(t *testing.T) {
	t.Parallel()
	var s Sampler
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				pid := i % 8
				s.CPUPercent(pid, Stat{PID: pid, CPUTime: time.Duration(i) * time.Millisecond})
				if g == 0 && i%50 == 0 {
					s.Forget(func(pid int) bool { return pid < 4 })
				}
			}
		})
	}
	wg.Wait()
}
