package child

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// stopSignals returns the signals that ask the worker to stop: SIGTERM, the
// master's default stop signal, and SIGINT too when the program runs by hand
// (under the master, workers sit in their own process group, so a terminal's
// Ctrl-C reaches only the master, which then drains them in order).
func stopSignals() []os.Signal {
	if load().supervised() {
		return []os.Signal{syscall.SIGTERM}
	}
	return []os.Signal{syscall.SIGTERM, os.Interrupt}
}

// StopContext returns a copy of parent that is cancelled when the first stop
// signal arrives: SIGTERM, and SIGINT too when the program runs by hand. It is
// meant for workers without an HTTP server (queue consumers and the like),
// which finish their current job and return once the context is done; a
// master started with another --stop-signal needs signal.NotifyContext with
// that signal instead. Calling stop releases the signal subscription, after
// which the signals have their default effect again.
func StopContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, stopSignals()...)
}
