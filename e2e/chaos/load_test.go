//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// maxLoad bounds one load run when nobody stops it.
const maxLoad = 15 * time.Minute

// load is a loadgen run in the background, one new connection per request,
// that records which worker answered.
type load struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{}
	res    *loadgen.Result

	mu  sync.Mutex
	by  map[int]*answerer // by PID
	new chan struct{}     // closed and replaced when a PID answers first
}

// answerer is one worker process as its answers describe it.
type answerer struct {
	gen, slot int
	answers   int
	first     time.Time
}

// startLoad sends load to addr until stop.
func startLoad(t *testing.T, addr string) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{t: t, cancel: cancel, done: make(chan struct{}), by: map[int]*answerer{}, new: make(chan struct{})}
	cfg := loadgen.Config{
		Addr:       addr,
		Clients:    *flagClients,
		Duration:   maxLoad,
		Timeout:    10 * time.Second,
		OnResponse: l.answered,
	}
	go func() {
		defer close(l.done)
		res, err := loadgen.Run(ctx, cfg)
		if err != nil {
			t.Errorf("load: %v", err)
			res = &loadgen.Result{Errors: map[string]int{}}
		}
		l.res = res
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

// answered parses "pid=P gen=G slot=S".
func (l *load) answered(_ int, body []byte) {
	var pid, gen, slot int
	for _, f := range bytes.Fields(body) {
		k, v, _ := bytes.Cut(f, []byte("="))
		n, _ := strconv.Atoi(string(v))
		switch string(k) {
		case "pid":
			pid = n
		case "gen":
			gen = n
		case "slot":
			slot = n
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.by[pid]
	if a == nil {
		a = &answerer{gen: gen, slot: slot, first: time.Now()}
		l.by[pid] = a
		close(l.new)
		l.new = make(chan struct{})
	}
	a.answers++
}

// stop ends the run, waits for every client and returns the result. It is
// safe to call again.
func (l *load) stop() *loadgen.Result {
	l.cancel()
	select {
	case <-l.done:
	case <-time.After(*flagTimeout):
		l.t.Fatalf("load still running %s after it was stopped", *flagTimeout)
	}
	return l.res
}

// answerers returns a copy of what is known of each PID that answered.
func (l *load) answerers() map[int]answerer {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]answerer, len(l.by))
	for pid, a := range l.by {
		out[pid] = *a
	}
	return out
}

// gens returns how many answers each generation gave.
func (l *load) gens() map[int]int {
	out := map[int]int{}
	for _, a := range l.answerers() {
		out[a.gen] += a.answers
	}
	return out
}

// waitAnswered waits up to d until every PID in pids has answered at least
// once and reports whether they all did.
func (l *load) waitAnswered(pids []int, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		missing := 0
		for _, pid := range pids {
			if l.by[pid] == nil {
				missing++
			}
		}
		newc := l.new
		l.mu.Unlock()
		if missing == 0 {
			return true
		}
		select {
		case <-newc:
		case <-deadline.C:
			return false
		}
	}
}

// errorsText is Result.Errors in a stable order, for logs and summaries.
func errorsText(errs map[string]int) string {
	if len(errs) == 0 {
		return "none"
	}
	var b bytes.Buffer
	for i, k := range slices.Sorted(maps.Keys(errs)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + " ×" + strconv.Itoa(errs[k]))
	}
	return b.String()
}

// gensText is "gen 1: 95, gen 2: 13999".
func gensText(gens map[int]int) string {
	var parts []string
	for _, g := range slices.Sorted(maps.Keys(gens)) {
		parts = append(parts, fmt.Sprintf("gen %d: %d", g, gens[g]))
	}
	return strings.Join(parts, ", ")
}
