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
//	TERM, INT   Stop; the second one ForceStop
//	TTIN        ScaleUp
//	TTOU        ScaleDown
package signals

import (
	"context"
	"os"
	"os/signal"
	"syscall"
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
	}
	return "unknown"
}

// Subscribed lists the signals hotcluster acts on.
var Subscribed = []os.Signal{
	syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT,
	syscall.SIGTTIN, syscall.SIGTTOU,
}

// Translator maps a stream of signals to intents. The zero value is ready.
type Translator struct {
	stops int
}

// Intent returns the intent of sig, and false for a signal it ignores. The
// second stop signal (TERM or INT) is a ForceStop.
func (t *Translator) Intent(sig os.Signal) (Intent, bool) {
	switch sig {
	case syscall.SIGHUP:
		return Reload, true
	case syscall.SIGUSR2:
		return Upgrade, true
	case syscall.SIGTERM, syscall.SIGINT:
		t.stops++
		if t.stops > 1 {
			return ForceStop, true
		}
		return Stop, true
	case syscall.SIGTTIN:
		return ScaleUp, true
	case syscall.SIGTTOU:
		return ScaleDown, true
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

// Interrupted returns a context that ends on SIGINT or SIGTERM, for the
// client commands (hotcluster status, reload, events…): Ctrl-C stops a
// wait cleanly, exit 0. stop releases the signals.
func Interrupted(ctx context.Context) (c context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
