package logsink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A reader that stops reading: writes still return at once, the lines that
// do not fit are counted, and once the reader catches up one notice says
// how many were lost; what was queued comes out whole and in order.
func TestStalledOutput(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var notices []uint64
	var mu sync.Mutex
	s := New(w, Config{MaxQueued: 1 << 10, Notice: func(n uint64) []byte {
		mu.Lock()
		notices = append(notices, n)
		mu.Unlock()
		return fmt.Appendf(nil, "dropped %d\n", n)
	}})
	// Fill the pipe (64 KiB on Linux) and the queue: nobody reads yet.
	line := strings.Repeat("x", 99) + "\n"
	start := time.Now()
	const n = 2000
	for i := 0; i < n; i++ {
		s.Write([]byte(line))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%d writes to a stalled output took %s", n, d)
	}
	if s.Dropped() == 0 {
		t.Fatalf("nothing dropped after %d lines into a stalled 64 KiB pipe and a 1 KiB queue", n)
	}
	s.Write([]byte("last\n"))
	dropped := s.Dropped()
	// Catch up.
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(r); got <- b }()
	if !s.Close(10 * time.Second) {
		t.Fatal("Close: the queue was not written although the reader caught up")
	}
	w.Close()
	out := <-got
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	var written, noticed int
	lastDropped := uint64(1)
	for _, l := range lines {
		switch {
		case l == line[:len(line)-1]:
			written++
		case strings.HasPrefix(l, "dropped "):
			noticed++
		case l == "last":
			lastDropped = 0
		default:
			t.Fatalf("a line came out cut or mixed: %.120q", l)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var sum uint64
	for _, k := range notices {
		sum += k
	}
	if sum != dropped || noticed != len(notices) {
		t.Errorf("notices %v (sum %d, %d in the output), want them to sum to the %d dropped", notices, sum, noticed, dropped)
	}
	if uint64(written)+dropped-lastDropped != n {
		t.Errorf("%d lines written + %d dropped, want %d", written, dropped, n)
	}
}

// A reader that went away: the writes fail with EPIPE, which is counted
// and kept, and nothing blocks or panics.
func TestBrokenOutput(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	notified := false
	s := New(w, Config{Notice: func(uint64) []byte { notified = true; return nil }})
	for i := 0; i < 100; i++ {
		s.Write([]byte("line\n"))
	}
	if !s.Close(10 * time.Second) {
		t.Fatal("Close did not finish with a closed reader")
	}
	w.Close()
	if s.Dropped() != 100 {
		t.Errorf("dropped %d, want 100", s.Dropped())
	}
	if !errors.Is(s.Err(), syscall.EPIPE) {
		t.Errorf("Err() = %v, want EPIPE", s.Err())
	}
	if notified {
		t.Error("a notice was asked for on an output that is gone")
	}
}

// Close gives up on an output the kernel blocks, at its deadline.
func TestCloseBlockedOutput(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	s := New(w, Config{})
	big := bytes.Repeat([]byte("y"), 1<<20)
	big[len(big)-1] = '\n'
	s.Write(big) // more than the pipe holds: the writer blocks in write(2)
	start := time.Now()
	if s.Close(100 * time.Millisecond) {
		t.Fatal("Close reported everything written into a pipe nobody reads")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %s with a 100ms deadline", d)
	}
	if n, _ := s.Write([]byte("after\n")); n != 6 || s.Dropped() != 1 {
		t.Errorf("a write after Close: n=%d, dropped %d; want it taken and dropped", n, s.Dropped())
	}
}

// failingWriter fails while fail is set, as a full disk does, and counts
// the writes it takes.
type failingWriter struct {
	mu     sync.Mutex
	fail   bool
	hold   chan struct{} // when set, a write waits for it to close
	writes int
	out    bytes.Buffer
}

func (f *failingWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return 0, syscall.ENOSPC
	}
	f.writes++
	return f.out.Write(p)
}

// An output that fails for a while (a full disk) and then recovers: Failed
// is called once for the burst, the lines are dropped and counted, and
// once it writes again one notice says how many were lost. With Batch,
// many lines go out in few writes, whole and in order.
func TestOutputThatRecovers(t *testing.T) {
	t.Parallel()
	fw := &failingWriter{fail: true}
	var failures []error
	var mu sync.Mutex
	s := New(fw, Config{Batch: true,
		Notice: func(n uint64) []byte { return fmt.Appendf(nil, "dropped %d\n", n) },
		Failed: func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() },
	})
	for i := 0; i < 10; i++ {
		s.Write([]byte("lost\n"))
	}
	// The writer has taken the ten lines once nothing is queued.
	deadline := time.Now().Add(10 * time.Second)
	for s.Dropped() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling a counter, no ordering rests on it
	}
	// The output recovers, but its first write waits until every line is
	// queued: what batching saves must not rest on which goroutine runs
	// first.
	hold := make(chan struct{})
	fw.mu.Lock()
	fw.fail, fw.hold = false, hold
	fw.mu.Unlock()
	const n = 5000
	for i := 0; i < n; i++ {
		s.Write(fmt.Appendf(nil, "line %d\n", i))
	}
	close(hold)
	if !s.Close(10 * time.Second) {
		t.Fatal("Close: the queue was not written")
	}
	if s.Dropped() != 10 {
		t.Errorf("dropped %d, want 10", s.Dropped())
	}
	mu.Lock()
	if len(failures) != 1 || !errors.Is(failures[0], syscall.ENOSPC) {
		t.Errorf("Failed called with %v, want once with ENOSPC", failures)
	}
	mu.Unlock()
	var notices []string
	i := 0
	for _, l := range strings.Split(strings.TrimSuffix(fw.out.String(), "\n"), "\n") {
		if strings.HasPrefix(l, "dropped ") {
			notices = append(notices, l)
			continue
		}
		if l != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, l)
		}
		i++
	}
	if i != n || len(notices) != 1 || notices[0] != "dropped 10" {
		t.Errorf("%d lines and the notices %q; want %d lines and one notice of 10", i, notices, n)
	}
	if fw.writes > n/10 {
		t.Errorf("%d lines took %d writes; want them batched", n, fw.writes)
	}
}
