// Package signals turns the operating system's signals into typed intents.
// It holds hotcluster's only signal.Notify call and never acts on an intent
// itself.
//
// Only the signals in the table below are subscribed: hotcluster forwards
// nothing, and SIGURG, the Go runtime's preemption signal, is never touched.
// SIGHUP means reload, so run hotcluster under systemd or a process manager
// (or nohup) rather than tied to a terminal that sends SIGHUP on close.
//
//	HUP         Reload
//	USR2        Upgrade
//	TERM, INT   Stop; a second one, RepeatWindow or more later, ForceStop
//	TTIN        ScaleUp
//	TTOU        ScaleDown
//	USR1        ReopenLogs (logrotate's convention, as nginx and gunicorn)
//
// SIGPIPE is caught and dropped by [SurviveBrokenPipe], so that a closed
// log reader never kills the master. SIGCHLD is for the reaper of orphans
// ([ChildExits]), and the keeper ignores the stop signals ([IgnoreStops]).
package signals

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Intent is what a signal asks the master to do.
type Intent int

// The intents.
const (
	Reload Intent = iota + 1
	Upgrade
	Stop
	ForceStop
	ScaleUp
	ScaleDown
	ReopenLogs
)

func (i Intent) String() string {
	switch i {
	case Reload:
		return "reload"
	case Upgrade:
		return "upgrade"
	case Stop:
		return "stop"
	case ForceStop:
		return "force-stop"
	case ScaleUp:
		return "scale-up"
	case ScaleDown:
		return "scale-down"
	case ReopenLogs:
		return "reopen-logs"
	}
	return "unknown"
}

// Subscribed lists the signals hotcluster acts on.
var Subscribed = []os.Signal{
	syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT,
	syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1,
}

// RepeatWindow is how soon after a stop signal another one is taken as the
// same request rather than as "stop at once": GNU timeout(1) sends SIGTERM
// to its child and then to the child's process group, so a master run
// under it gets two within microseconds, and a drain must not be skipped
// for that. A person who presses Ctrl-C again because the drain takes too
// long does so later.
const RepeatWindow = 500 * time.Millisecond

// Translator maps a stream of signals to intents. The zero value is ready.
type Translator struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	stopped   bool
	firstStop time.Time
}

// Intent returns the intent of sig, and false for a signal it ignores. A
// stop signal (TERM or INT) after the first is a ForceStop, unless it came
// within RepeatWindow of the first: then it is ignored.
func (t *Translator) Intent(sig os.Signal) (Intent, bool) {
	switch sig {
	case syscall.SIGHUP:
		return Reload, true
	case syscall.SIGUSR2:
		return Upgrade, true
	case syscall.SIGTERM, syscall.SIGINT:
		now := time.Now
		if t.Now != nil {
			now = t.Now
		}
		if !t.stopped {
			t.stopped, t.firstStop = true, now()
			return Stop, true
		}
		if now().Sub(t.firstStop) < RepeatWindow {
			return 0, false
		}
		return ForceStop, true
	case syscall.SIGTTIN:
		return ScaleUp, true
	case syscall.SIGTTOU:
		return ScaleDown, true
	case syscall.SIGUSR1:
		return ReopenLogs, true
	}
	return 0, false
}

// Run subscribes to [Subscribed] and calls handle, from Run's goroutine,
// with each intent until ctx ends; then it unsubscribes and returns ctx's
// error. handle must not block for long: signals queue behind it (the
// channel holds a few, as signal.Notify requires).
func Run(ctx context.Context, handle func(Intent)) error {
	c := make(chan os.Signal, 8)
	signal.Notify(c, Subscribed...)
	defer signal.Stop(c)
	return Translate(ctx, c, handle)
}

// Translate is Run over a given channel, so that tests can inject signals
// without signalling the test process.
func Translate(ctx context.Context, c <-chan os.Signal, handle func(Intent)) error {
	var t Translator
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case sig := <-c:
			if in, ok := t.Intent(sig); ok {
				handle(in)
			}
		}
	}
}

// SurviveBrokenPipe keeps the process alive when it writes to a closed
// pipe on stdout or stderr (hotcluster run … | head): the write fails
// with EPIPE instead, which the log writer counts. Go kills a program with
// SIGPIPE on such a write unless the signal is ignored or subscribed
// (os/signal, "SIGPIPE"). It is subscribed rather than ignored because an
// ignored disposition survives execve and every worker would inherit it,
// while a caught one is reset to the default at exec. The channel is never
// read: the signal package drops what does not fit.
func SurviveBrokenPipe() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// Interrupted returns a context that ends on SIGINT or SIGTERM, for the
// client commands (hotcluster status, reload, events…): Ctrl-C stops a
// wait cleanly, exit 0. stop ends the context but keeps the signals
// caught for the rest of the process's short life: one that comes while
// the command is on its way out (its stream ended as the signal was
// sent) would otherwise kill it with the default action instead of
// letting it exit with its own status.
func Interrupted(ctx context.Context) (c context.Context, stop context.CancelFunc) {
	c, stop = context.WithCancel(ctx)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { // ends with c, which stop or a signal ends
		select {
		case <-sig:
			stop()
		case <-c.Done():
		}
	}()
	return c, stop
}

// ChildExits subscribes to SIGCHLD: the channel receives a value after one
// or more child processes have changed state. Signals coalesce (the
// channel holds one), so a receiver must look at every child each time.
// stop unsubscribes. The reaper of orphans (package internal/reaper) is
// its user; it never waits for a child another part of the process waits
// for.
func ChildExits() (c <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	return ch, func() { signal.Stop(ch) }
}

// IgnoreStops makes this process ignore SIGTERM, SIGINT and SIGHUP: for
// the keeper, which must outlive the master it watches and ends when the
// master does, not when a terminal's Ctrl-C or a stop meant for the
// master reaches it. The keeper execs nothing, so the ignored dispositions
// (which survive execve) reach no other program.
func IgnoreStops() {
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
}
