package cli

// Mistakes in the command line. Each is a *usageError, exit code 2, that
// says what was wrong and what to do, in the project's words rather than
// the flag package's ("flag provided but not defined: -wokers").

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// onUsageError is the OnUsageError of the app and of every command: urfave/cli
// calls it with what the flag package said about a command line it could
// not parse.
func onUsageError(c *cli.Context, err error, _ bool) error {
	return &usageError{flagError(c, err)}
}

var (
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	missingValue  = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
	badValue      = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-+([^:]+): (.*)$`)
)

// flagError rewrites the flag package's err for the command c runs.
func flagError(c *cli.Context, err error) error {
	// "run: ", or nothing for the app's own flags.
	where, see, flags := "", "; see "+c.App.Name+" help", c.App.VisibleFlags()
	if c.Command != nil && c.Command.HelpName != "" && c.Command.HelpName != c.App.Name {
		name := strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ")
		where, see, flags = name+": ", see+" "+name, c.Command.VisibleFlags()
	}
	msg := err.Error()
	if sm := undefinedFlag.FindStringSubmatch(msg); sm != nil {
		name := strings.SplitN(sm[1], "=", 2)[0]
		return fmt.Errorf("%sunknown flag %s%s%s", where, dashed(name), didYouMean(name, flagNames(flags), dashed), see)
	}
	if sm := missingValue.FindStringSubmatch(msg); sm != nil {
		return fmt.Errorf("%s%s needs a value%s", where, dashed(sm[1]), see)
	}
	if sm := badValue.FindStringSubmatch(msg); sm != nil {
		name := sm[2]
		return fmt.Errorf("%s%s %s: want %s%s", where, dashed(name), sm[1], valueKind(flags, name), see)
	}
	return fmt.Errorf("%s%w%s", where, err, see)
}

// dashed is a flag name as it is typed: --workers, -n.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func flagNames(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	return names
}

// valueKind says what a flag's value must look like.
func valueKind(flags []cli.Flag, name string) string {
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f.(type) {
		case *cli.IntFlag, *altsrc.IntFlag:
			return "a whole number"
		case *cli.DurationFlag, *altsrc.DurationFlag:
			return "a duration such as 500ms, 30s or 2m"
		case *cli.BoolFlag, *altsrc.BoolFlag:
			return "true or false"
		}
	}
	return "a value of another form"
}

// didYouMean is " (did you mean X?)" for the candidate closest to name, if
// one is close enough to be a typo, else "". urfave/cli's own suggestion
// names the closest candidate however far it is ("xyz": did you mean ls?).
func didYouMean(name string, candidates []string, show func(string) string) string {
	best, bestD := "", len(name)/3+2
	for _, c := range candidates {
		if len(c) < 2 && len(name) > 2 {
			continue
		}
		d := editDistance(name, c)
		if strings.HasPrefix(c, name) && len(name) >= 3 {
			d = 1
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + show(best) + "?)"
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment): insertions, deletions, substitutions and swaps of two
// neighbours each cost 1, so "stauts" is 1 from "status".
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// commandNames are the names of the app's visible commands.
func commandNames(app *cli.App) []string {
	var names []string
	for _, c := range app.VisibleCommands() {
		names = append(names, c.Names()...)
	}
	return names
}

func unknownCommand(app *cli.App, name string) error {
	return usagef("unknown command %q%s; %s help lists the commands", name,
		didYouMean(name, commandNames(app), func(s string) string { return s }), app.Name)
}

// errNoCommand is `hotcluster` alone: the help is printed, exit 2.
var errNoCommand = &reportedError{&usageError{errors.New("no command given")}}

// rootAction runs when no command matched: the app's help for no
// arguments, else an unknown command.
func rootAction(c *cli.Context) error {
	if c.NArg() == 0 {
		cli.ShowAppHelp(c)
		return errNoCommand
	}
	return unknownCommand(c.App, c.Args().First())
}

// helpCommand is `hotcluster help [COMMAND]`. urfave/cli's own says "No
// help topic for 'stauts'" and exits 3.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:         "help",
		Usage:        "show the commands, or one command's options and examples",
		ArgsUsage:    "[COMMAND]",
		HideHelp:     true,
		OnUsageError: onUsageError,
		BashComplete: func(c *cli.Context) {
			if c.NArg() == 0 {
				fmt.Fprintln(c.App.Writer, strings.Join(commandNames(c.App), "\n"))
			}
		},
		Action: func(c *cli.Context) error {
			switch c.NArg() {
			case 0:
				return cli.ShowAppHelp(c)
			case 1:
				cmd := c.App.Command(c.Args().First())
				if cmd == nil {
					return unknownCommand(c.App, c.Args().First())
				}
				cli.HelpPrinter(c.App.Writer, "", cmd)
				return nil
			}
			return usagef("help: want one COMMAND at most, got %q", c.Args().Slice())
		},
	}
}
