package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/logs"
	"github.com/hotcluster/hotcluster/signals"
	"github.com/urfave/cli/v2"
)

// The commands that talk to a running master over its control socket.

func ctlFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "the instance's `NAME` (as given to run --name; default: the only one running)"},
		&cli.StringFlag{Name: "control", Usage: "the instance's control socket `PATH` (as given to run --control)"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
	}
}

func ctlCommand(name, usage, argsUsage string, action cli.ActionFunc, extra ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name:         name,
		Usage:        usage,
		ArgsUsage:    argsUsage,
		Category:     "operating a running instance",
		Flags:        append(ctlFlags(), extra...),
		Action:       action,
		OnUsageError: onUsageError,
	}
}

func ctlCommands() []*cli.Command {
	return []*cli.Command{
		ctlCommand("status", "show the master, its generation and each worker (PID, state, uptime, restarts, RSS, CPU)", "", statusAction),
		ctlCommand("reload", "start a new generation and wait: exit 0 once it serves, 1 with the reason if it failed (the old one keeps serving)", "", reloadAction),
		ctlCommand("upgrade", "replace the master by a new start of its binary, keeping the sockets; exit 0 once the new master serves", "", upgradeAction),
		ctlCommand("scale", "set the number of workers (N), or change it (+N, -N)", "N|+N|-N", scaleAction),
		ctlCommand("stop", "drain the workers and stop the master; returns once it has exited", "", stopAction,
			&cli.BoolFlag{Name: "force", Usage: "kill the workers at once instead of draining them"}),
		ctlCommand("events", "print the instance's events as JSON lines as they happen (fork, ready, exit, reload-start, reload-done, ...)", "", eventsAction),
		ctlCommand("logs", "print the last lines of the workers and the master (kept in the master's memory), and with -f follow new ones, also across reloads and upgrades", "", logsAction,
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Value: defaultLogLines, Usage: "print the last `N` lines (0: none, with -f only new ones)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "print new lines as they come, until interrupted"},
			&cli.IntFlag{Name: "worker", Value: -1, DefaultText: "every worker's, and hotcluster's own", Usage: "only the lines of worker `SLOT`"},
			&cli.IntFlag{Name: "generation", DefaultText: "every generation's", Usage: "only the lines of generation `G`"},
			&cli.DurationFlag{Name: "since", Usage: "only lines of the last `DURATION` (e.g. 10m)"}),
		ctlCommand("send", "send a JSON value to the workers' message channel (--ipc)", "JSON", sendAction,
			&cli.IntFlag{Name: "worker", DefaultText: "every worker, as --all", Usage: "send only to the worker in `SLOT` of the serving generation"},
			&cli.BoolFlag{Name: "all", Usage: "send to every worker of the serving generation (the default)"}),
		{
			Name:         "ls",
			Usage:        "list this user's running instances",
			Category:     "operating a running instance",
			Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"}},
			Action:       lsAction,
			OnUsageError: onUsageError,
		},
	}
}

// socketOf resolves the control socket a command talks to: --control, or
// the instance --name names, or without a name the only one running.
// Masters are looked for where `hotcluster ls` looks: this user's
// directory first, and for root also the other users' and the one a
// service systemd runs uses (/run/hotcluster, without XDG_RUNTIME_DIR),
// so that root in an ssh session finds the service. Sockets left by
// masters that were killed do not count.
func socketOf(c *cli.Context) (string, error) {
	if p := c.String("control"); p != "" {
		return p, nil
	}
	dir := control.DefaultDir()
	n := c.String("name")
	if n != "" {
		if err := control.CheckName(n); err != nil {
			return "", usagef("--name: %w", err)
		}
		if control.Alive(c.Context, control.SocketPath(dir, n)) {
			return control.SocketPath(dir, n), nil
		}
	}
	dirs := control.Dirs()
	running := control.Running(c.Context, dirs)
	if n == "" {
		// This user's own instances first: root's in its session wins
		// over the services it can also see.
		var own []control.Instance
		for _, in := range running {
			if filepath.Dir(in.Socket) == dir {
				own = append(own, in)
			}
		}
		if len(own) > 0 {
			running = own
		}
	}
	var found []control.Instance
	for _, in := range running {
		if n == "" || in.Name == n {
			found = append(found, in)
		}
	}
	// Names, and where each is when it is not in this user's directory.
	describe := func(ins []control.Instance, sockets bool) string {
		var s []string
		for _, in := range ins {
			if sockets || filepath.Dir(in.Socket) != dir {
				s = append(s, in.Name+" at "+in.Socket)
			} else {
				s = append(s, in.Name)
			}
		}
		return strings.Join(s, ", ")
	}
	switch {
	case len(found) == 1:
		return found[0].Socket, nil
	case len(found) == 0 && n != "" && len(running) > 0:
		return "", fmt.Errorf("no master is running as %s; running: %s (give one of these to --name)", n, describe(running, false))
	case len(found) == 0 && n != "":
		return "", fmt.Errorf("no master is running as %s, nor any other (looked in %s); start one with hotcluster run --name %s, or give --control", n, strings.Join(dirs, ", "), n)
	case len(found) == 0:
		return "", fmt.Errorf("no hotcluster instance is running (looked in %s); start one with hotcluster run, or give --control", strings.Join(dirs, ", "))
	case n != "":
		return "", usagef("%d instances are named %s (%s): pick one with --control", len(found), n, describe(found, true))
	}
	return "", usagef("%d instances are running (%s): pick one with --name", len(found), describe(found, false))
}

// ctlContext ends on Ctrl-C, so that a waiting command stops cleanly.
func ctlContext(c *cli.Context) (context.Context, context.CancelFunc) {
	return signals.Interrupted(c.Context)
}

func call(c *cli.Context, req control.Request, result any) error {
	if c.Args().Len() > 0 && req.Cmd != control.CmdScale && req.Cmd != control.CmdSend {
		return usagef("%s takes no arguments, got %q", req.Cmd, c.Args().Slice())
	}
	path, err := socketOf(c)
	if err != nil {
		return err
	}
	ctx, cancel := ctlContext(c)
	defer cancel()
	return control.Call(ctx, path, req, result)
}

func printJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

func statusAction(c *cli.Context) error {
	var st control.Status
	if err := call(c, control.Request{Cmd: control.CmdStatus}, &st); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, st)
	}
	return printStatus(c.App.Writer, st, statusColour(c.App.Writer))
}

func reloadAction(c *cli.Context) error {
	var r control.Reload
	if err := call(c, control.Request{Cmd: control.CmdReload}, &r); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, r)
	}
	fmt.Fprintf(c.App.Writer, "generation %d ready in %s\n", r.Generation, humanDuration(r.Took.D()))
	return nil
}

func upgradeAction(c *cli.Context) error {
	var r control.Upgraded
	if err := call(c, control.Request{Cmd: control.CmdUpgrade}, &r); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, r)
	}
	fmt.Fprintf(c.App.Writer, "upgraded: master pid %d serves\n", r.PID)
	return nil
}

func scaleAction(c *cli.Context) error {
	if c.Args().Len() != 1 {
		return usagef("scale: want one argument, N, +N or -N")
	}
	if _, _, err := control.ParseScale(c.Args().First()); err != nil {
		return &usageError{err}
	}
	var r control.Scaled
	if err := call(c, control.Request{Cmd: control.CmdScale, Scale: c.Args().First()}, &r); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, r)
	}
	fmt.Fprintf(c.App.Writer, "scaling to %d workers\n", r.Size)
	return nil
}

func stopAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("stop takes no arguments, got %q", c.Args().Slice())
	}
	path, err := socketOf(c)
	if err != nil {
		return err
	}
	ctx, cancel := ctlContext(c)
	defer cancel()
	start := time.Now()
	if err := control.Stop(ctx, path, c.Bool("force")); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"stopped": true, "took_seconds": control.Duration(time.Since(start))})
	}
	fmt.Fprintf(c.App.Writer, "stopped in %s\n", humanDuration(time.Since(start)))
	return nil
}

func eventsAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("events takes no arguments, got %q", c.Args().Slice())
	}
	path, err := socketOf(c)
	if err != nil {
		return err
	}
	ctx, cancel := ctlContext(c)
	defer cancel()
	out := c.App.Writer
	print := func(line json.RawMessage) error {
		_, err := fmt.Fprintf(out, "%s\n", line)
		return err
	}
	// A master that upgrades hands the socket to its successor: the stream
	// ends, and goes on from the new master (whose first line is another
	// "connected"). It ends for good when no master answers any more.
	const maxStreams = 1000 // upgrades followed in one run
	for streams := 0; streams < maxStreams; streams++ {
		err = control.Events(ctx, path, print)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && streams > 0 && (errors.Is(err, control.ErrNoMaster) || errors.Is(err, control.ErrNoAnswer)):
			return nil // the master stopped
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("events: the stream ended %d times; giving up", maxStreams)
}

// defaultLogLines is what `hotcluster logs` prints without -n, as tail(1).
const defaultLogLines = 10

func logsAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("logs takes no arguments, got %q", c.Args().Slice())
	}
	req := control.Request{Cmd: control.CmdLogs, Lines: c.Int("lines"), Follow: c.Bool("follow")}
	if req.Lines < 0 {
		return usagef("logs: --lines %d: want 0 or more", req.Lines)
	}
	if c.IsSet("worker") {
		w := c.Int("worker")
		if w < 0 {
			return usagef("logs: --worker %d: want a slot, 0 or more", w)
		}
		req.Slot = &w
	}
	if g := c.Int("generation"); c.IsSet("generation") {
		if g < 1 {
			return usagef("logs: --generation %d: want a generation, 1 or more", g)
		}
		req.Generation = uint64(g)
	}
	start := time.Now()
	if d := c.Duration("since"); c.IsSet("since") {
		if d <= 0 {
			return usagef("logs: --since %s: want a positive duration such as 10m", d)
		}
		since := start.Add(-d)
		req.Since = &since
		if !c.IsSet("lines") {
			req.Lines = -1 // every line of that time
		}
	}
	path, err := socketOf(c)
	if err != nil {
		return err
	}
	ctx, cancel := ctlContext(c)
	defer cancel()
	p := newLogPrinter(c.App.Writer, c.App.ErrWriter, c.Bool("json"))
	// A master that upgrades hands the socket to its successor: a
	// following stream ends, and goes on from the new master, from the
	// lines it has that this one has not printed (the old master's lines
	// it did not send are lost). It ends for good when no master answers.
	const maxStreams = 1000
	for streams := 0; streams < maxStreams; streams++ {
		err = control.Stream(ctx, path, req, p.started, p.line)
		switch {
		case ctx.Err() != nil:
			return nil
		case !req.Follow:
			return err
		case err != nil && streams > 0 && (errors.Is(err, control.ErrNoMaster) || errors.Is(err, control.ErrNoAnswer)):
			return nil // the master stopped
		case err != nil:
			return err
		}
		// Again, from what the next master holds since this command began.
		req.Lines = -1
		if req.Since == nil || req.Since.Before(start) {
			req.Since = &start
		}
	}
	return fmt.Errorf("logs: the stream ended %d times; giving up", maxStreams)
}

// logPrinter prints the lines of `hotcluster logs`, once each across
// the streams of the masters it follows.
type logPrinter struct {
	out, errOut io.Writer
	json        bool
	style       logs.Style
	pid         int            // of the master streaming now
	printed     map[int]uint64 // per master PID, the last sequence number printed
}

func newLogPrinter(out, errOut io.Writer, json bool) *logPrinter {
	p := &logPrinter{out: out, errOut: errOut, json: json, printed: make(map[int]uint64),
		style: logs.Style{Format: logs.Text, Time: true}}
	if f, ok := out.(*os.File); ok && useColorOn(f) {
		p.style.Color = true
	}
	return p
}

func (p *logPrinter) started(result json.RawMessage) error {
	var s control.LogsStarted
	if err := json.Unmarshal(result, &s); err != nil {
		return fmt.Errorf("logs: the master's answer: %w", err)
	}
	p.pid = s.PID
	return nil
}

func (p *logPrinter) line(raw json.RawMessage) error {
	var l control.LogLine
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("logs: a line from the master: %w", err)
	}
	if l.Dropped > 0 {
		fmt.Fprintf(p.errOut, "hotcluster: logs: %d lines dropped here: this command did not read them fast enough\n", l.Dropped)
		return nil
	}
	if l.Seq != 0 {
		if l.Seq <= p.printed[p.pid] {
			return nil // printed from an earlier stream of this master
		}
		p.printed[p.pid] = l.Seq
	}
	if p.json {
		_, err := fmt.Fprintf(p.out, "%s\n", raw)
		return err
	}
	r := logs.Record{Time: l.Time, Priority: logs.PriorityOfLevel(l.Level), Master: l.Stream == "",
		Gen: l.Gen, PID: l.PID, Stream: l.Stream, Text: []byte(l.Msg), Cut: l.Cut}
	if l.Slot != nil {
		r.Slot = *l.Slot
	}
	if len(l.JSON) > 0 {
		r.Text = l.JSON
	}
	_, err := p.out.Write(p.style.Append(nil, &r))
	return err
}

func sendAction(c *cli.Context) error {
	if c.Args().Len() != 1 {
		return usagef(`send: want one JSON value, e.g. hotcluster send '{"cmd":"flush"}'`)
	}
	msg := json.RawMessage(c.Args().First())
	if !json.Valid(msg) {
		return usagef("send: %q is not JSON; quote strings: '\"hello\"'", c.Args().First())
	}
	req := control.Request{Cmd: control.CmdSend, Message: msg}
	if w := c.Int("worker"); c.IsSet("worker") {
		if c.Bool("all") {
			return usagef("send: --worker and --all exclude each other")
		}
		if w < 0 {
			return usagef("send: --worker %d: want a slot, 0 or more", w)
		}
		req.Slot = &w
	}
	var r control.Sent
	if err := call(c, req, &r); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, r)
	}
	fmt.Fprintf(c.App.Writer, "delivered to %d worker(s)\n", r.Delivered)
	return nil
}

func lsAction(c *cli.Context) error {
	dir := control.DefaultDir()
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	type row struct {
		Name   string          `json:"name"`
		Socket string          `json:"socket"`
		Status *control.Status `json:"status,omitempty"`
		Error  string          `json:"error,omitempty"`
	}
	rows := []row{}
	for _, in := range control.Running(ctx, control.Dirs()) {
		r := row{Name: in.Name, Socket: in.Socket}
		var st control.Status
		if err := control.Call(ctx, r.Socket, control.Request{Cmd: control.CmdStatus}, &st); err != nil {
			if errors.Is(err, control.ErrNoMaster) {
				continue // a socket left by a master that was killed
			}
			r.Error = err.Error()
		} else {
			r.Status = &st
		}
		rows = append(rows, r)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintf(c.App.Writer, "no instance running (sockets in %s)\n", dir)
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	// Root also sees other users' instances: then say where each is.
	other := false
	for _, r := range rows {
		other = other || filepath.Dir(r.Socket) != dir
	}
	head := "NAME\tPID\tGEN\tWORKERS\tUPTIME\tLISTEN\tCOMMAND"
	if other {
		head += "\tSOCKET"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		cols := []string{r.Name, "-", "-", "-", "-", "-", r.Error}
		if st := r.Status; st != nil {
			var addrs []string
			for _, l := range st.Listeners {
				addrs = append(addrs, l.Addr)
			}
			cols = []string{r.Name, strconv.Itoa(st.PID), strconv.FormatUint(st.Generation, 10), strconv.Itoa(len(st.Workers)),
				humanDuration(st.Uptime.D()), strings.Join(addrs, ","), strings.Join(st.Command, " ")}
		}
		if other {
			cols = append(cols, r.Socket)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

// scaleArgs lets `hotcluster scale -1` mean a worker less, not a flag: a
// negative count moves behind "--".
func scaleArgs(args []string) []string {
	if len(args) < 3 || args[1] != "scale" || slices.Contains(args, "--") {
		return args
	}
	for i := len(args) - 1; i >= 2; i-- {
		if a := args[i]; len(a) > 1 && a[0] == '-' && strings.Trim(a[1:], "0123456789") == "" {
			out := append(slices.Clone(args[:i]), args[i+1:]...)
			return append(out, "--", a)
		}
	}
	return args
}
