package procstat_test

import (
	"fmt"
	"time"

	"github.com/hotcluster/hotcluster/internal/procstat"
)

func ExampleSampler() {
	// Readings as procstat.Read returns them, two seconds apart, during
	// which the process used one and a half seconds of CPU.
	started := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	first := procstat.Stat{PID: 42, CPUTime: 3 * time.Second, Started: started, At: started.Add(time.Minute)}
	second := first
	second.CPUTime += 1500 * time.Millisecond
	second.At = second.At.Add(2 * time.Second)

	var s procstat.Sampler
	fmt.Println(s.CPUPercent(42, first))
	fmt.Println(s.CPUPercent(42, second))

	// Once worker 42 is gone, stop remembering it.
	alive := map[int]bool{}
	s.Forget(func(pid int) bool { return alive[pid] })
	// Output:
	// 0
	// 75
}
