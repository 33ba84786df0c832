// Package systemd speaks to the service manager that runs hotcluster: the
// notify protocol of Type=notify services (READY=1, RELOADING=1, STATUS=,
// STOPPING=1, WATCHDOG=1, EXTEND_TIMEOUT_USEC=, MAINPID=), the sockets of
// socket activation, and journald's native protocol for the log
// ([Journal]; its role widened from notify alone so that go-systemd keeps
// one importer: github.com/coreos/go-systemd is imported here only).
//
// Invariant: every method of [Notifier] is a no-op when the master was not
// started with NOTIFY_SOCKET, so hotcluster behaves the same by hand and under systemd,
// and a notify failure never stops the master: it is logged by the caller.
//
// Workers never see this socket: each gets its own (package workers).
package systemd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends state changes to the service manager. It is safe for
// concurrent use.
type Notifier struct {
	enabled bool
}

// NewNotifier reads NOTIFY_SOCKET. The variable stays set: a master
// started by an upgrade inherits it.
func NewNotifier() *Notifier {
	return &Notifier{enabled: os.Getenv("NOTIFY_SOCKET") != ""}
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n.enabled }

func (n *Notifier) send(lines ...string) error {
	if !n.enabled {
		return nil
	}
	if _, err := daemon.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		return fmt.Errorf("systemd: notify %s: %w", lines[0], err)
	}
	return nil
}

// status makes s one line, as STATUS= must be.
func status(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return "STATUS=" + s
}

// Ready says the service serves (at start, and at the end of each reload,
// failed or not), with a one-line status.
func (n *Notifier) Ready(s string) error {
	return n.send(daemon.SdNotifyReady, status(s))
}

// Reloading says a reload started.
func (n *Notifier) Reloading(s string) error {
	return n.send(daemon.SdNotifyReloading, daemon.SdNotifyMonotonicUsec(), status(s))
}

// Status updates the one-line status.
func (n *Notifier) Status(s string) error { return n.send(status(s)) }

// Stopping says the service stops; the drain may take up to drain, which
// extends systemd's stop timeout so that it does not kill a draining group.
func (n *Notifier) Stopping(s string, drain time.Duration) error {
	return n.send(daemon.SdNotifyStopping, status(s),
		"EXTEND_TIMEOUT_USEC="+strconv.FormatInt((drain+5*time.Second).Microseconds(), 10))
}

// MainPID names the process that is the service's main process from now
// on, as an old master does for the new one after an upgrade.
func (n *Notifier) MainPID(pid int) error {
	return n.send("MAINPID=" + strconv.Itoa(pid))
}

// Watchdog sends WATCHDOG=1 at half the interval systemd asked for
// (WATCHDOG_USEC, when WATCHDOG_PID is unset or names this process), until
// ctx ends, each time alive, given at most that half interval, says the
// service works: a ticker alone would prove only that a ticker runs. It
// returns at once when no watchdog is asked for.
func (n *Notifier) Watchdog(ctx context.Context, alive func(context.Context) bool) error {
	if !n.enabled {
		return nil
	}
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("systemd: watchdog: %w", err)
	}
	if every == 0 {
		return nil
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, every/2)
		ok := alive(actx)
		cancel()
		if ok {
			if err := n.send(daemon.SdNotifyWatchdog); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Listeners returns the sockets the service manager handed in (socket
// activation: LISTEN_FDS for this PID), named by LISTEN_FDNAMES, and unsets
// those variables. The caller owns the files.
func Listeners() []*os.File {
	return activation.Files(true)
}
