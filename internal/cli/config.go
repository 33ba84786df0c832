package cli

// The config file of `hotcluster run`: a TOML file whose keys are the names
// of run's flags, plus "command" for the worker command.
//
//	workers = 4
//	listen = [":8080"]
//	env = ["A=1"]
//	ready-timeout = "30s"
//	command = ["./server", "--port", "8080"]
//
// It is --config FILE, or hotcluster.toml in the working directory when that
// exists and --config is not given (--config "" reads no file). Flags on the
// command line win over the file, and a command after -- wins over
// "command". Values go through altsrc (urfave/cli's input sources), so the
// flag list of run stays defined once and a value from the file is checked
// by parseRun exactly as the same flag on the command line is. altsrc
// ignores keys it does not know; loadConfigFile rejects them instead, and
// checks each value's type against its flag, so a typo never goes unnoticed.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hotcluster/hotcluster/internal/master"
	"github.com/hotcluster/hotcluster/internal/safedir"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

const (
	// defaultConfigFile is read from the working directory when it exists
	// and --config is not given.
	defaultConfigFile = "hotcluster.toml"
	// configFlagName is the flag naming the config file.
	configFlagName = "config"
	// commandKey is the config file's key for the worker command.
	commandKey = "command"
)

// withConfigFile returns flags with each flag wrapped in its altsrc
// counterpart, so that the config file can set it, and the --config flag
// (named configFlagName) wrapped in a *configFileFlag. It panics on a flag
// type that altsrc cannot set from a file: that is a mistake in the flag
// list, which every test catches.
func withConfigFile(flags []cli.Flag) []cli.Flag {
	out := make([]cli.Flag, len(flags))
	for i, f := range flags {
		switch f := f.(type) {
		// The types run's flags have; a new one gets its case here, in
		// fileValue and in exampleValue.
		case *cli.BoolFlag:
			out[i] = altsrc.NewBoolFlag(f)
		case *cli.IntFlag:
			out[i] = altsrc.NewIntFlag(f)
		case *cli.StringFlag:
			if f.Name == configFlagName {
				out[i] = &configFileFlag{StringFlag: f}
			} else {
				out[i] = altsrc.NewStringFlag(f)
			}
		case *cli.DurationFlag:
			out[i] = altsrc.NewDurationFlag(f)
		case *cli.StringSliceFlag:
			out[i] = altsrc.NewStringSliceFlag(f)
		default:
			panic(fmt.Sprintf("config file: flag --%s: type %T cannot be set from a file", f.Names()[0], f))
		}
	}
	return out
}

// configFileFlag is the --config flag. It keeps the flag set it was applied
// to, which loadConfigFile extends with the file's worker command: that is
// the only way to give a cli.Context positional arguments after parsing.
// Each App gets its own flags (newApp builds them), so this is no shared
// state.
type configFileFlag struct {
	*cli.StringFlag
	set *flag.FlagSet
}

// Apply records set, then applies the string flag to it.
func (f *configFileFlag) Apply(set *flag.FlagSet) error {
	f.set = set
	return f.StringFlag.Apply(set)
}

// readConfigFile reads the config file at name, which says what commands
// the master runs (as root, maybe): only a file that no user but root and
// this one can change, all the way to it (see package internal/safedir); a
// hotcluster.toml planted in /tmp is not read.
func readConfigFile(name string) ([]byte, error) {
	b, _, err := safedir.ReadTrusted(name, maxConfigFile)
	return b, err
}

// maxConfigFile bounds what a config file may hold.
const maxConfigFile = 1 << 20

// loadConfigFile is the Before of `hotcluster run`: it reads the config file,
// if any, and sets from it every flag the command line did not set, and the
// worker command if none was given after --. Mistakes in the file are usage
// errors naming the file.
func loadConfigFile(c *cli.Context) error {
	name := c.String(configFlagName)
	if !c.IsSet(configFlagName) {
		if _, err := os.Stat(defaultConfigFile); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		name = defaultConfigFile
	} else if name == "" {
		return nil
	}
	data, err := readConfigFile(name)
	if err != nil {
		return usagef("config file: %w", err)
	}
	flags := c.Command.Flags
	cf, err := decodeConfigFile(name, data, flags)
	if err != nil {
		return err
	}
	if err := altsrc.ApplyInputSourceValues(c, altsrc.NewMapInputSource(name, cf.values), flags); err != nil {
		return usagef("%s: %w", name, err)
	}
	if len(cf.command) == 0 || c.Args().Present() {
		return nil
	}
	for _, f := range flags {
		if cff, ok := f.(*configFileFlag); ok && cff.set != nil {
			// After "--" the flag set takes everything as arguments.
			return cff.set.Parse(append([]string{"--"}, cf.command...))
		}
	}
	return fmt.Errorf("%s: key %q: no --%s flag to hold the command", name, commandKey, configFlagName)
}

// configFile is a config file, decoded and checked against the flags.
type configFile struct {
	// values holds a value for each flag the file sets, by the flag's
	// name, typed as altsrc.MapInputSource expects it.
	values map[any]any
	// command is the worker command, if the file gives one.
	command []string
}

// decodeConfigFile decodes data, the contents of the config file name, and
// checks it against flags (run's flags, as withConfigFile returns them).
// Its errors are usage errors: syntax errors name the line, unknown keys
// are listed with the valid ones, and a value of the wrong type names its
// key and the type wanted.
func decodeConfigFile(name string, data []byte, flags []cli.Flag) (*configFile, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, usagef("%s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		return nil, usagef("%s: %w", name, err)
	}
	known := configKeys(flags)
	var unknown []string
	for k := range doc {
		if _, ok := known[k]; !ok && k != commandKey {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		valid := append(slices.Collect(maps.Keys(known)), commandKey)
		slices.Sort(valid)
		what := "key"
		if len(unknown) > 1 {
			what = "keys"
		}
		return nil, usagef("%s: unknown %s %s; valid keys are the flags of hotcluster run: %s",
			name, what, quoteAll(unknown), strings.Join(valid, ", "))
	}
	cf := &configFile{values: make(map[any]any, len(doc))}
	for k, v := range doc {
		if k == commandKey {
			cmd, ok := stringArray(v)
			if !ok || len(cmd) == 0 {
				return nil, usagef("%s: key %q: want the program and its arguments, e.g. command = [\"./server\", \"--port\", \"8080\"], not %s",
					name, k, tomlType(v))
			}
			cf.command = cmd
			continue
		}
		fv, err := fileValue(known[k], v)
		if err != nil {
			return nil, usagef("%s: key %q: %w", name, k, err)
		}
		cf.values[k] = fv
	}
	return cf, nil
}

// configKeys returns the flags a config file may set, by their first name:
// those withConfigFile wrapped (not --config, nor cli's --help).
func configKeys(flags []cli.Flag) map[string]cli.Flag {
	keys := make(map[string]cli.Flag)
	for _, f := range flags {
		if _, ok := f.(altsrc.FlagInputSourceExtension); ok {
			keys[f.Names()[0]] = f
		}
	}
	return keys
}

// fileValue checks v, decoded from TOML, against the type of flag f and
// returns it typed as altsrc.MapInputSource expects it. A single string is
// accepted for a list of strings.
func fileValue(f cli.Flag, v any) (any, error) {
	bad := func(want string) error { return fmt.Errorf("want %s, not %s", want, tomlType(v)) }
	switch f.(type) {
	case *altsrc.BoolFlag:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, bad("true or false")
	case *altsrc.IntFlag:
		n, ok := v.(int64)
		if !ok || n < math.MinInt || n > math.MaxInt {
			return nil, bad("an integer")
		}
		return int(n), nil
	case *altsrc.StringFlag:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, bad("a string")
	case *altsrc.DurationFlag:
		s, ok := v.(string)
		if !ok {
			return nil, bad(`a duration string such as "30s"`)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("%q: want a duration such as \"30s\" or \"1m30s\"", s)
		}
		return s, nil
	case *altsrc.StringSliceFlag:
		if s, ok := v.(string); ok {
			return []any{s}, nil
		}
		if _, ok := stringArray(v); ok {
			return v, nil
		}
		return nil, bad("an array of strings")
	}
	return nil, fmt.Errorf("flag type %T cannot be set from a file", f)
}

// stringArray returns v as strings if it is a TOML array of strings.
func stringArray(v any) ([]string, bool) {
	a, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(a))
	for i, e := range a {
		if out[i], ok = e.(string); !ok {
			return nil, false
		}
	}
	return out, true
}

// tomlType describes the type of a decoded TOML value for an error.
func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("%v", v)
	case []any:
		return "an array of " + arrayTypes(v)
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

// arrayTypes describes the element types of a TOML array.
func arrayTypes(a []any) string {
	if len(a) == 0 {
		return "nothing"
	}
	var kinds []string
	for _, e := range a {
		var k string
		switch e.(type) {
		case string:
			k = "strings"
		case int64:
			k = "integers"
		case float64:
			k = "floats"
		case bool:
			k = "booleans"
		case []any:
			k = "arrays"
		case map[string]any:
			k = "tables"
		default:
			k = "dates"
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	return strings.Join(kinds, " and ")
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// reparseRun parses a `hotcluster run` command line again, args being the
// whole of it as in os.Args, config file included: the master calls it on
// reload to pick up changes to the file. It runs a fresh App from newApp
// whose run action only parses, so it starts nothing and is safe to call
// while the real App runs, also from several goroutines: the fresh App
// hides cli's help, version and completion flags and its help command, which are
// package variables that setting up an App writes to. Its errors are those
// `hotcluster run` would fail with (usage errors are *usageError).
func reparseRun(args []string) (*master.Config, error) {
	app := newApp()
	app.HideHelp, app.HideVersion = true, true
	// Nor the --help and completion flags, nor the help printed for a
	// command line without a command.
	app.Flags, app.EnableBashCompletion = nil, false
	app.Action = func(*cli.Context) error { return nil }
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	var rc *master.Config
	for _, cmd := range app.Commands {
		if cmd.Name != "run" {
			continue
		}
		cmd.HideHelp, cmd.HideHelpCommand = true, true
		cmd.Action = func(c *cli.Context) error {
			var err error
			rc, err = parseRun(c)
			return err
		}
	}
	if err := app.RunContext(context.Background(), args); err != nil {
		return nil, err
	}
	if rc == nil {
		return nil, usagef("not a hotcluster run command line: %q", args)
	}
	return rc, nil
}
