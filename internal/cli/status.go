package cli

// `hotcluster status` as text: the master, what serves, and one row per
// worker slot as `pm2 ls` has it: live workers, slots waiting for their
// respawn after a crash (crash loops among them) and slots given up, each
// row about that worker only; durations for people; states in colour on a
// terminal.

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/devloop"
)

// humanDuration is d as people read it, to two units at most: 340ms,
// 4.2s, 12m03s, 3h07m, 2d04h.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + humanDuration(-d)
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// colour codes for status. Every coloured cell carries exactly 9 bytes of
// codes (a 5-byte colour, a 4-byte reset) and in a coloured table every
// cell of the STATE column is coloured, so that tabwriter, which counts
// the codes as width, still aligns the columns.
const (
	green   = "\x1b[32m"
	yellow  = "\x1b[33m"
	red     = "\x1b[31m"
	plain   = "\x1b[39m"
	boldish = "\x1b[01m"
	reset   = "\x1b[0m"
)

// painter colours text when on is set.
type painter bool

func (p painter) paint(colour, s string) string {
	if !p {
		return s
	}
	return colour + s + reset
}

// stateColour is the colour of a worker's or the instance's state.
func stateColour(state string) string {
	switch state {
	case "ready", "serving":
		return green
	case "starting", "draining", "degraded", "restarting", "stopping", "stopped":
		return yellow
	case "errored", "crash loop", "hung":
		return red
	}
	return plain
}

// statusColour: colours when standard output is a terminal and NO_COLOR
// is not set (no-color.org).
func statusColour(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	tty := false
	rc.Control(func(fd uintptr) { tty = devloop.IsTerminal(int(fd)) })
	return tty
}

// statusRow is one row of the worker table.
type statusRow struct {
	slot         int
	gen          uint64
	pid          int
	state        string
	uptime, exit string
	restarts     int
	rss, cpu     string
	replacing    bool
}

func printStatus(out io.Writer, st control.Status, colour bool) error {
	p := painter(colour)
	now := time.Now()
	fmt.Fprintf(out, "%s: master pid %d, hotcluster %s, up %s\n", st.Name, st.PID, st.Version, humanDuration(st.Uptime.D()))
	fmt.Fprintf(out, "command: %s\n", strings.Join(st.Command, " "))
	if len(st.NextCommand) > 0 {
		why := "the next generation's"
		switch {
		case st.Pending != 0:
			why = fmt.Sprintf("generation %d's, starting", st.Pending)
		case st.LastReload != nil && !st.LastReload.OK:
			why = fmt.Sprintf("generation %d failed with it; the next reload tries it again unless the command line changes", st.LastReload.Generation)
		}
		fmt.Fprintf(out, "next command: %s (%s)\n", strings.Join(st.NextCommand, " "), why)
	}
	for _, l := range st.Listeners {
		mode := l.Mode
		if l.Selector != "" {
			mode += ", " + l.Selector
		}
		if l.PerSlot {
			mode += ", a socket per worker"
		}
		if l.Sticky {
			mode += ", sticky by client address"
		}
		fmt.Fprintf(out, "listening: %s on %s (%s)\n", l.Name, l.Addr, mode)
	}
	for _, f := range st.ForeignSockets {
		var owners []string
		for _, o := range f.Owners {
			owners = append(owners, fmt.Sprintf("pid %d (%s)", o.PID, o.Command))
		}
		if len(owners) == 0 {
			owners = []string{"an owner this user cannot see"}
		}
		effect := "it gets no connections"
		if f.TakesConnections {
			effect = "it TAKES CONNECTIONS meant for the workers"
		}
		fmt.Fprintf(out, "%s on %s (listener %s) since %s: %s; %s\n", p.paint(red, "FOREIGN SOCKET"), f.Addr, f.Listener,
			f.Since.Format(time.RFC3339), strings.Join(owners, ", "), effect)
	}
	if r := st.Rescue; r != nil && (r.Relays > 0 || r.Queued > 0 || r.Reset > 0 || r.KeepAlive > 0 || r.Held > 0) {
		// Quiet until the rescuer has done something.
		fmt.Fprintf(out, "relaying: %d connections now, %d held; rescued %d from retired accept queues, %d keep-alive requests (%d relays went on to a new upstream); %d closed, %d reset\n",
			r.Relays, r.Held, r.Queued, r.KeepAlive, r.Redialed, r.Closed, r.Reset)
	}
	if r := st.Rescue; r != nil && r.Disabled != "" {
		fmt.Fprintf(out, "keep-alive rescue off: %s\n", r.Disabled)
	}
	state := st.State
	if state == "" {
		// A master from before states: serving or stopping.
		state = "serving"
		if st.Stopping {
			state = "stopping"
		}
	}
	shown := p.paint(stateColour(state), state)
	if state == "errored" {
		shown = p.paint(red, "ERRORED") + ": no worker serves; waiting for a reload"
	}
	line := fmt.Sprintf("generation %d %s, %d workers", st.Generation, shown, st.Size)
	if r := st.Rollout; r != nil {
		line += fmt.Sprintf("; %s: generation %d replaces %d at a time", r.Progress, r.Generation, r.Batch)
	} else if st.Pending != 0 {
		line += fmt.Sprintf("; generation %d starting", st.Pending)
	}
	fmt.Fprintln(out, line)
	if r := st.Rollout; r != nil && r.Back {
		fmt.Fprintf(out, "rollout %s: %s; slots %v go back to generation %d\n", p.paint(red, "FAILED"), r.Error, r.Slots, r.From)
	}
	if r := st.LastReload; r != nil {
		if r.OK {
			fmt.Fprintf(out, "last reload: generation %d ready in %s\n", r.Generation, humanDuration(r.Took.D()))
		} else {
			fmt.Fprintf(out, "last reload: generation %d %s after %s: %s\n", r.Generation, p.paint(red, "FAILED"), humanDuration(r.Took.D()), r.Error)
		}
	}
	for _, e := range st.Errored {
		fmt.Fprintf(out, "slot %d given up %s ago: %s\n", e.Slot, humanDuration(now.Sub(e.Since)), e.Why)
	}
	if l := st.Log; l != nil {
		var names []string
		for _, o := range l.Outputs {
			names = append(names, o.Name)
		}
		kept := "none kept for hotcluster logs (--log-buffer 0)"
		if l.BufferMaxLines > 0 {
			kept = fmt.Sprintf("%d lines kept for hotcluster logs (%s of %s)", l.BufferLines, formatSize(uint64(l.BufferBytes)), formatSize(uint64(l.BufferMaxBytes)))
		}
		fmt.Fprintf(out, "log: to %s; %s\n", strings.Join(names, ", "), kept)
		for _, o := range l.Outputs {
			if o.Dropped > 0 {
				why := "not written fast enough"
				if o.Error != "" {
					why = o.Error
				}
				fmt.Fprintf(out, "log: %d lines %s by %s (%s)\n", o.Dropped, p.paint(red, "dropped"), o.Name, why)
			}
		}
	} else if st.LogDropped > 0 {
		fmt.Fprintf(out, "log: %d lines dropped (the master's output was not read fast enough, or has gone)\n", st.LogDropped)
	}

	var rows []statusRow
	for _, w := range st.Workers {
		exit := "-"
		if w.PreviousExit != "" {
			exit = "before: " + w.PreviousExit
			if w.PreviousExitAt != nil {
				exit += ", " + humanDuration(now.Sub(*w.PreviousExitAt)) + " ago"
			}
		}
		rows = append(rows, statusRow{slot: w.Slot, gen: w.Generation, pid: w.PID, state: w.State, uptime: humanDuration(w.Uptime.D()),
			restarts: w.Restarts, exit: exit, rss: formatSize(w.RSS), cpu: fmt.Sprintf("%.1f%%", w.CPUPercent), replacing: w.Replacing})
	}
	for _, r := range st.Restarting {
		state := "restarting"
		if r.CrashLoop {
			state = "crash loop"
		}
		exit := fmt.Sprintf("%s, %s ago; respawn in %s", r.Exit, humanDuration(now.Sub(r.ExitedAt)), humanDuration(r.RespawnIn.D()))
		if r.CrashLoop {
			exit = fmt.Sprintf("%s (%d crashes in a row), %s ago; respawn in %s", r.Exit, r.Crashes, humanDuration(now.Sub(r.ExitedAt)), humanDuration(r.RespawnIn.D()))
		}
		rows = append(rows, statusRow{slot: r.Slot, gen: r.Generation, pid: r.PID, state: state, uptime: "-", restarts: r.Restarts, exit: exit, rss: "-", cpu: "-"})
	}
	for _, e := range st.Errored {
		if e.PID == 0 {
			continue // a master from before these fields
		}
		rows = append(rows, statusRow{slot: e.Slot, gen: e.Generation, pid: e.PID, state: "errored", uptime: "-", restarts: e.Restarts,
			exit: e.Exit + ", " + humanDuration(now.Sub(e.Since)) + " ago; given up until the next reload", rss: "-", cpu: "-"})
	}
	slices.SortStableFunc(rows, func(a, b statusRow) int {
		if a.gen != b.gen {
			return int(a.gen) - int(b.gen)
		}
		return a.slot - b.slot
	})
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	head := "STATE"
	if colour {
		head = boldish + head + reset
	}
	fmt.Fprintf(tw, "SLOT\tGEN\tPID\t%s\tUPTIME\tRESTARTS\tEXIT\tRSS\tCPU\n", head)
	for _, r := range rows {
		state := r.state
		if r.replacing {
			state += " (replacement)"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", r.slot, r.gen, r.pid, p.paint(stateColour(r.state), state),
			r.uptime, r.restarts, r.exit, r.rss, r.cpu)
	}
	return tw.Flush()
}
