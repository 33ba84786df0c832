package workers

import (
	"context"
	"io"
	"testing"
	"testing/synctest"
	"time"
)

// Readiness at listen(2), driven in-process as pool_test.go drives the
// rest: the fakes "listen" on command, as the bind and listen supervisor
// reports a worker's calls.

// listeners is a Sockets of the given names.
type listeners struct {
	*fakeSockets
	names []string
}

func (l *listeners) Names() []string { return l.names }
func (l *listeners) Describe() []string {
	d := make([]string, len(l.names))
	for i, n := range l.names {
		d[i] = n + "=127.0.0.1:" + string(rune('1'+i)) + "000"
	}
	return d
}
func (l *listeners) Inodes(uint64, int) []uint64 { return make([]uint64, len(l.names)) }
func (l *listeners) Serve(uint64, []int) error   { return nil }

// newListenHarness is newHarness with readiness mode ready and the named
// listeners.
func newListenHarness(t *testing.T, cfg Config, ready ReadyMode, names ...string) *harness {
	t.Helper()
	h := &harness{t: t, socks: &fakeSockets{}, runErr: make(chan error, 1)}
	h.stopSignal = DefaultStopSignal
	cfg.Command = Command{Path: "/bin/app", Args: []string{"app"}}
	cfg.Sockets = &listeners{fakeSockets: h.socks, names: names}
	cfg.Output = io.Discard
	cfg.RuntimeDir = t.TempDir()
	cfg.Ready = ready
	cfg.OnEvent = func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	p.spawnFn = h.spawn
	p.strict = true
	go func() { h.runErr <- p.Run(context.Background()) }()
	synctest.Wait()
	return h
}

// listen reports that the process called listen(2) on listener i.
func (fp *fakeProc) listen(i int) { fp.h.p.post(listenedEvent{w: fp.w, i: i}) }

func (fp *fakeProc) say(msg string) { fp.h.p.post(notifyEvent{w: fp.w, msg: msg}) }

func serving(h *harness, gen uint64) bool {
	st := h.status()
	return st.Current == gen && st.State == StateServing
}

// A program that says nothing is ready when it listens, long before
// --ready-delay, and each worker's listen is a "listening" event.
func TestPoolReadyWhenListening(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newListenHarness(t, Config{Workers: 2, ReadyDelay: time.Hour}, ReadyAuto, "web")
		start := time.Now()
		h.proc(1, 0).listen(0)
		synctest.Wait()
		if serving(h, 1) {
			t.Fatal("gen 1 serves with one of its two workers listening")
		}
		h.proc(1, 1).listen(0)
		h.proc(1, 1).listen(0) // again (a pre-forked child): no second event
		synctest.Wait()
		if !serving(h, 1) {
			t.Fatalf("gen 1 not serving once both workers listen: %+v", h.status())
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("ready after %s of the clock, want at once", d)
		}
		ev := h.kinds(WorkerListening)
		if len(ev) != 2 || ev[0].Listener != "web=127.0.0.1:1000" || ev[0].Slot != 0 || ev[1].Slot != 1 {
			t.Errorf("listening events %+v, want one per worker naming web", ev)
		}
		// A reload is as quick.
		h.p.Reload(Update{})
		synctest.Wait()
		h.proc(2, 0).listen(0)
		h.proc(2, 1).listen(0)
		synctest.Wait()
		if !serving(h, 2) {
			t.Errorf("gen 2 not serving once its workers listen: %+v", h.status())
		}
		h.stop()
	})
}

// With several listeners, a worker is listening once it listened on all.
func TestPoolListeningNeedsEveryListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newListenHarness(t, Config{Workers: 1, ReadyDelay: time.Hour}, ReadyAuto, "web", "admin")
		h.proc(1, 0).listen(1)
		synctest.Wait()
		if serving(h, 1) {
			t.Fatal("serving with one listener of two")
		}
		h.proc(1, 0).listen(0)
		synctest.Wait()
		if !serving(h, 1) {
			t.Fatal("not serving once it listens on both")
		}
		h.stop()
	})
}

// Listening is not ready for a program that speaks the notify protocol,
// for --ready notify and --ready delay, and once any worker sent READY=1;
// a program that never listens is ready after the delay, as before.
func TestPoolListeningDoesNotOverruleTheProtocol(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ready ReadyMode
		// before runs on gen 1's worker before it listens.
		before func(h *harness)
	}{
		{"spoke", ReadyAuto, func(h *harness) { h.proc(1, 0).say("STATUS=loading") }},
		{"notify", ReadyNotify, nil},
		{"delay", ReadyDelay, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newListenHarness(t, Config{Workers: 1, ReadyDelay: time.Minute, ReadyTimeout: time.Hour}, tc.ready, "web")
				if tc.before != nil {
					tc.before(h)
				}
				h.proc(1, 0).listen(0)
				synctest.Wait()
				if serving(h, 1) {
					t.Fatal("taken as ready at listen")
				}
				if len(h.kinds(WorkerListening)) != 1 {
					t.Error("no listening event")
				}
				h.stop()
			})
		})
	}
	t.Run("after READY=1", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newListenHarness(t, Config{Workers: 1, ReadyDelay: time.Minute}, ReadyAuto, "web")
			h.proc(1, 0).ready()
			synctest.Wait()
			h.p.Reload(Update{})
			synctest.Wait()
			h.proc(2, 0).listen(0)
			synctest.Wait()
			if serving(h, 2) {
				t.Fatal("gen 2 taken as ready at listen, after gen 1 sent READY=1")
			}
			h.proc(2, 0).ready()
			synctest.Wait()
			if !serving(h, 2) {
				t.Fatal("gen 2 not serving after READY=1")
			}
			h.stop()
		})
	})
	t.Run("never listens", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newListenHarness(t, Config{Workers: 1, ReadyDelay: time.Minute, ReadyTimeout: time.Hour}, ReadyAuto, "web")
			start := time.Now()
			time.Sleep(time.Minute)
			synctest.Wait()
			if !serving(h, 1) || time.Since(start) != time.Minute {
				t.Fatalf("not serving after --ready-delay: %+v", h.status())
			}
			h.stop()
		})
	})
}
