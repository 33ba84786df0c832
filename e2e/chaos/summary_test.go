//go:build chaos

package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// figure is one scenario's line of the summary.
type figure struct {
	Test string `json:"test"`
	// Fault is what was done to hotcluster.
	Fault string `json:"fault"`
	// Outcome is what happened, in words.
	Outcome string `json:"outcome"`
	// Figures are the numbers measured, in the order they were added.
	Figures []keyValue `json:"figures"`
	Passed  bool       `json:"passed"`
	Seconds float64    `json:"seconds"`
}

type keyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

var (
	figuresMu sync.Mutex
	figures   []*figure
)

// record starts the summary line of t's scenario; whether it passed and how
// long it took are filled in when t ends.
func record(t *testing.T, fault string) *figure {
	f := &figure{Test: t.Name(), Fault: fault}
	start := time.Now()
	figuresMu.Lock()
	figures = append(figures, f)
	figuresMu.Unlock()
	t.Cleanup(func() {
		figuresMu.Lock()
		defer figuresMu.Unlock()
		f.Passed = !t.Failed()
		if !f.Passed {
			f.Outcome = "FAILED (see the log). Expected: " + f.Outcome
		}
		f.Seconds = time.Since(start).Round(100 * time.Millisecond).Seconds()
	})
	return f
}

// add records a figure and logs it.
func (f *figure) add(t *testing.T, key string, value any) {
	t.Helper()
	t.Logf("%s: %v", key, value)
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f.Figures = append(f.Figures, keyValue{key, value})
}

// outcome says what happened, once the test checked it; a failed test's
// line says so instead.
func (f *figure) outcome(s string) {
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f.Outcome = s
}

// summary is the JSON document -chaos.json writes.
type summary struct {
	Date     string     `json:"date"`
	Command  string     `json:"command"`
	Machine  machine    `json:"machine"`
	Settings []keyValue `json:"settings"`
	Passed   bool       `json:"passed"`
	Seconds  float64    `json:"seconds"`
	Results  []*figure  `json:"results"`
}

type machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	RaceOn bool   `json:"race_detector_in_tests_and_workers"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1, 5 and 15 minute
	// averages when the run started and ended: other work on the machine
	// slows the workers' start and so every reload.
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
}

// loadBefore is /proc/loadavg when the tests started.
var loadBefore = loadavg()

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func writeSummary(took time.Duration, code int) error {
	if *flagJSON == "" && *flagMarkdown == "" {
		return nil
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	s := summary{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Command: *flagCommand,
		Machine: thisMachine(),
		Settings: []keyValue{
			{"workers", *flagWorkers}, {"clients", *flagClients},
			{"kill-for", flagKillFor.String()}, {"kill-every", flagKillEvery.String()},
			{"hups", *flagHUPs}, {"reloads", *flagReloads},
		},
		Passed:  code == 0,
		Seconds: took.Round(time.Second).Seconds(),
		Results: slices.Clone(figures),
	}
	// The order of docs/reliability.md, whatever order the parallel tests
	// ran in.
	slices.SortStableFunc(s.Results, func(a, b *figure) int { return rank(a.Test) - rank(b.Test) })
	if s.Command == "" {
		s.Command = strings.Join(os.Args, " ")
	}
	if *flagJSON != "" {
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*flagJSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *flagMarkdown != "" {
		if err := os.WriteFile(*flagMarkdown, []byte(markdown(&s)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func markdown(s *summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run on %s: `%s`, %s wall time, %s.\n\n", s.Date, s.Command, time.Duration(s.Seconds*float64(time.Second)), passText(s.Passed))
	m := s.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, Linux %s, %s, load average %s before and %s after", m.CPU, m.Cores, m.Kernel, m.Go, m.LoadBefore, m.LoadAfter)
	if m.RaceOn {
		b.WriteString(", race detector on (test binary and workers; the master is a plain build)")
	}
	b.WriteString(".\nSettings:")
	for i, kv := range s.Settings {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s %s=%v", sep, kv.Key, kv.Value)
	}
	b.WriteString(".\n\n| fault | what happened | figures | result |\n| --- | --- | --- | --- |\n")
	for _, f := range s.Results {
		var fig []string
		for _, kv := range f.Figures {
			fig = append(fig, cell(fmt.Sprintf("%s: %v", kv.Key, kv.Value)))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s (%.0fs) |\n", cell(f.Fault), cell(f.Outcome), strings.Join(fig, "<br>"), passText(f.Passed), f.Seconds)
	}
	return b.String()
}

var testOrder = []string{"TestRandomWorkerKills", "TestSIGHUPBurst", "TestNewGenerationCrashes",
	"TestNewGenerationHangs", "TestStuckGenerationIsKilled", "TestMasterSIGKILL", "TestConsecutiveReloads"}

func rank(test string) int {
	if i := slices.Index(testOrder, test); i >= 0 {
		return i
	}
	return len(testOrder)
}

func cell(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

func passText(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

func thisMachine() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), RaceOn: raceEnabled, LoadBefore: loadBefore, LoadAfter: loadavg()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return m
}
