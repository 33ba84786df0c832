package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/master"
	"github.com/hotcluster/hotcluster/internal/unitfile"
	"github.com/urfave/cli/v2"
)

func unitCommand() *cli.Command {
	return &cli.Command{
		Name:      "unit",
		Usage:     "print a systemd .service (and with --socket, .socket) unit for a `hotcluster run` command line",
		ArgsUsage: "-- RUN-FLAGS... -- COMMAND [ARG...]",
		Description: `Example:

   hotcluster unit --name myapp --socket -- --listen web=:8080 --workers 4 -- /srv/app/server --flag

prints myapp.service (and myapp.socket) on standard output, each preceded by a
"# file: NAME" line; --out DIR writes them into DIR instead.`,
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "unit base `NAME`: NAME.service, NAME.socket (required)"},
			&cli.BoolFlag{Name: "socket", Usage: "also a .socket unit per --listen: systemd binds, hotcluster inherits"},
			&cli.StringFlag{Name: "exec", Usage: "absolute path of the hotcluster binary in the unit (default: this one)"},
			&cli.StringFlag{Name: "user", Usage: "User= of the service"},
			&cli.StringFlag{Name: "group", Usage: "Group= of the service"},
			&cli.StringFlag{Name: "description", Usage: "Description= of the service"},
			&cli.StringFlag{Name: "out", Usage: "write the units into `DIR` (e.g. /etc/systemd/system) instead of printing them"},
		},
		Action: unitAction,
	}
}

// hasRunFlag reports whether run arguments give one of the flags, before
// the worker command.
func hasRunFlag(args []string, names ...string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		for _, n := range names {
			for _, f := range []string{"-" + n, "--" + n} {
				if a == f || strings.HasPrefix(a, f+"=") {
					return true
				}
			}
		}
	}
	return false
}

func unitAction(c *cli.Context) error {
	if c.String("name") == "" {
		return usagef("unit: --name is required: the units' base name, e.g. --name myapp for myapp.service")
	}
	runArgs := c.Args().Slice()
	if len(runArgs) == 0 {
		return usagef("no run arguments: give them after --, e.g. hotcluster unit --name app -- --listen :8080 -- /srv/app/server")
	}
	// The instance takes the unit's name, so that `hotcluster status --name
	// NAME` finds what `systemctl status NAME` shows.
	if name := c.String("name"); control.CheckName(name) == nil && !hasRunFlag(runArgs, "name", "control") {
		runArgs = append([]string{"--name", name}, runArgs...)
	}
	// run would read ./hotcluster.toml here; the service runs elsewhere, so
	// it gets the file by its absolute path.
	if !hasRunFlag(runArgs, configFlagName) {
		if abs, err := filepath.Abs(defaultConfigFile); err == nil {
			if _, err := os.Stat(abs); err == nil {
				runArgs = append([]string{"--" + configFlagName, abs}, runArgs...)
			}
		}
	}
	// Parse them exactly as `hotcluster run` would, so a unit never holds a
	// command line that run refuses.
	var rc *master.Config
	var configFile string
	parse := runCommand()
	parse.Action = func(rctx *cli.Context) error {
		var err error
		rc, err = parseRun(rctx)
		configFile = rctx.String(configFlagName)
		return err
	}
	app := &cli.App{Name: "hotcluster", Commands: []*cli.Command{parse}, DisableSliceFlagSeparator: true,
		ExitErrHandler: func(*cli.Context, error) {}, Writer: c.App.ErrWriter, ErrWriter: c.App.ErrWriter,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return &usageError{err} }}
	if err := app.RunContext(c.Context, append([]string{"hotcluster", "run"}, runArgs...)); err != nil {
		return fmt.Errorf("run arguments: %w", err)
	}
	if rc == nil {
		return usagef("run arguments: nothing to run")
	}
	exe := c.String("exec")
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("find this binary: %w (give --exec)", err)
		}
	}
	// A service starts in WorkingDirectory, with systemd's PATH: what the
	// shell found relative to here, or on this user's PATH, must be given
	// the way it will be found there.
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("unit: the current directory: %w", err)
	}
	workDir := cwd
	if rc.Pool.Dir != "" {
		workDir = rc.Pool.Dir
	}
	runArgs = absoluteRunArgs(runArgs, rc, cwd)
	if configFile != "" && !filepath.IsAbs(configFile) {
		configFile = filepath.Join(cwd, configFile)
	}
	for _, w := range pathWarnings(rc, configFile, c.String("user"), exe, workDir) {
		fmt.Fprintf(c.App.ErrWriter, "hotcluster: warning: %s\n", w)
	}
	o := unitfile.Options{
		Name: c.String("name"), Description: c.String("description"), Exec: exe, RunArgs: runArgs,
		WorkingDirectory: workDir, User: c.String("user"), Group: c.String("group"),
		DrainTimeout: rc.Pool.DrainTimeout, ShutdownDelay: rc.ShutdownDelay, ReadyTimeout: rc.Pool.ReadyTimeout,
		Nagle: rc.Sockets.Nagle,
	}
	type file struct{ name, text string }
	var files []file
	if c.Bool("socket") {
		specs := rc.Sockets.Specs
		if len(specs) == 0 {
			return usagef("--socket needs at least one --listen in the run arguments")
		}
		for _, s := range specs {
			name := o.Name
			if len(specs) > 1 {
				name = o.Name + "-" + s.Name
			}
			o.SocketUnits = append(o.SocketUnits, name+".socket")
			so := o
			so.Name = name
			so.ServiceUnit = o.Name + ".service"
			so.Listen = []unitfile.Listen{{Name: s.Name, Network: s.Network, Addr: s.Addr}}
			text, err := unitfile.Socket(so)
			if err != nil {
				return &usageError{err}
			}
			files = append(files, file{name + ".socket", text})
		}
	}
	text, err := unitfile.Service(o)
	if err != nil {
		return &usageError{err}
	}
	files = append([]file{{o.Name + ".service", text}}, files...)
	dir := c.String("out")
	for _, f := range files {
		if dir == "" {
			fmt.Fprintf(c.App.Writer, "# file: %s\n%s\n", f.name, f.text)
			continue
		}
		if err := writeFileAtomic(filepath.Join(dir, f.name), []byte(f.text)); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "wrote %s\n", filepath.Join(dir, f.name))
	}
	return nil
}

// writeFileAtomic never leaves a half-written unit behind.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	// Through the descriptor: in a directory others can write, the name
	// could be a symlink to a root file by now.
	merr := tmp.Chmod(0o644)
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
