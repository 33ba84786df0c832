package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "write an example config file for hotcluster run (hotcluster.toml)",
		ArgsUsage: "[FILE]",
		Description: `Writes FILE (default hotcluster.toml, - for standard output): every flag of
hotcluster run as a commented key with its usage and default, and an example
listen and command to edit. hotcluster run reads ./hotcluster.toml when it
exists, or the file --config names.`,
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite FILE if it exists"},
		},
		Action: initAction,
	}
}

func initAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return usagef("init: want one FILE at most, got %d arguments", c.NArg())
	}
	name := defaultConfigFile
	if c.NArg() == 1 {
		name = c.Args().First()
	}
	data := exampleConfig()
	if name == "-" {
		_, err := c.App.Writer.Write(data)
		return err
	}
	if err := writeConfigFile(name, data, c.Bool("force")); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "wrote %s: edit listen and command, then run hotcluster run\n", name)
	return nil
}

// writeConfigFile writes data to name atomically: to a temporary file in
// the same directory, then renamed (with force) or hard-linked (without,
// which fails if name exists) into place, so that no reader sees half a
// file and an existing file is never clobbered without force.
func writeConfigFile(name string, data []byte, force bool) error {
	exists := func() error {
		return usagef("init: %s exists; give --force to overwrite it", name)
	}
	if _, err := os.Lstat(name); err == nil && !force {
		return exists()
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("init: write %s: %w", tmp.Name(), err)
	}
	if !force {
		err = os.Link(tmp.Name(), name)
		if errors.Is(err, fs.ErrExist) {
			return exists()
		}
		if err == nil {
			return nil
		}
		// No hard links on this file system: the Lstat above has to do.
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return nil
}

// exampleConfig is the config file that `hotcluster init` writes: a
// commented key for every flag a config file may set, in the order of
// `hotcluster run --help`, with a listen and a command to edit.
func exampleConfig() []byte {
	var b bytes.Buffer
	b.WriteString(`# Config file of hotcluster run, written by hotcluster init.
#
# hotcluster run reads ./hotcluster.toml when it exists, or the file
# --config names. Each key is a flag of hotcluster run, by its long name;
# a flag given on the command line wins over the file, and a command given
# after -- wins over the command key. Unknown keys are an error.
# Uncomment a key to set it; the value shown is its default or an example.

# The worker command: the program and its arguments.
command = ["./server"]
`)
	// Grouped as --help groups them: the flags without a category first.
	categories := []string{""}
	byCategory := map[string][]cli.Flag{}
	for _, f := range runCommand().Flags {
		if _, ok := f.(altsrc.FlagInputSourceExtension); !ok {
			continue // --config, which a file cannot set
		}
		c := ""
		if cf, ok := f.(cli.CategorizableFlag); ok {
			c = cf.GetCategory()
		}
		if _, seen := byCategory[c]; !seen && c != "" {
			categories = append(categories, c)
		}
		byCategory[c] = append(byCategory[c], f)
	}
	for _, c := range categories {
		if c != "" {
			fmt.Fprintf(&b, "\n# --- %s ---\n", c)
			if intro := categoryIntro[c]; intro != "" {
				b.WriteString("#\n")
				for _, line := range wrapWords(intro, 76) {
					b.WriteString("# " + line + "\n")
				}
			}
		}
		for _, f := range byCategory[c] {
			writeExampleKey(&b, f)
		}
	}
	return b.Bytes()
}

// categoryIntro says what a group of keys is about, at its head.
var categoryIntro = map[string]string{
	"logs": "Where lines go: by default the workers' stdout to hotcluster's stdout, " +
		"their stderr (marked err) and hotcluster's own lines to its stderr, each with " +
		"its time; under systemd straight to the journal, with HOTCLUSTER_SLOT and the " +
		"other fields journalctl selects on; with log-file to a file, rotated by size " +
		"and reopened on SIGUSR1 for logrotate. A worker's line is cut at 64 KiB. " +
		"Whatever the outputs, the master keeps the last lines of each worker for " +
		"hotcluster logs (-f follows). An output that is slow, full or gone costs " +
		"lines, counted in hotcluster status, never a stalled master. See Logs in " +
		"docs/operations.md.",
}

// writeExampleKey writes to b the usage of f and its key, commented out with
// its default, except listen, set to an example.
func writeExampleKey(b *bytes.Buffer, f cli.Flag) {
	name := f.Names()[0]
	usage, def := flagUsage(f)
	value := exampleValue(f)
	if name == "workers" {
		// The default depends on the machine that runs init.
		def, value = "the CPU quota of its cgroup, else the number of CPUs", 4
	}
	if def != "" {
		usage += " (default: " + def + ")"
	}
	b.WriteByte('\n')
	for _, line := range wrapWords(usage, 76) {
		b.WriteString("# " + line + "\n")
	}
	if name == "listen" {
		value = []string{":8080"}
	} else {
		b.WriteString("# ")
	}
	// Values are of the types exampleValue returns, which TOML encodes.
	if err := toml.NewEncoder(b).Encode(map[string]any{name: value}); err != nil {
		panic(fmt.Sprintf("init: encode %s: %v", name, err))
	}
}

// flagUsage returns the usage text of f without its backquotes, and its
// default as --help shows it.
func flagUsage(f cli.Flag) (usage, def string) {
	if df, ok := f.(cli.DocGenerationFlag); ok {
		usage, def = df.GetUsage(), df.GetDefaultText()
	}
	if d, ok := f.(*altsrc.DurationFlag); ok && d.DefaultText == "" {
		def = shortDuration(d.Value)
	}
	return strings.ReplaceAll(usage, "`", ""), def
}

// exampleValue returns the value a commented key shows for f, as the TOML
// type the config file wants: its default or, for an empty list, the
// placeholder of its usage (env = ["K=V"]).
func exampleValue(f cli.Flag) any {
	switch f := f.(type) {
	case *altsrc.BoolFlag:
		return f.Value
	case *altsrc.IntFlag:
		return f.Value
	case *altsrc.DurationFlag:
		return shortDuration(f.Value)
	case *altsrc.StringFlag:
		return f.Value
	case *altsrc.StringSliceFlag:
		if f.Value != nil && len(f.Value.Value()) > 0 {
			return f.Value.Value()
		}
		if u := f.Usage; strings.Count(u, "`") >= 2 {
			return []string{strings.Split(u, "`")[1]}
		}
		return []string{}
	}
	return ""
}

// shortDuration formats d as time.Duration does, without zero minutes and
// seconds: 1m, not 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// wrapWords breaks s into lines of at most width bytes, at spaces (a longer
// word gets a line of its own).
func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		for i, w := range splitLong(word, width) {
			// The pieces of a split word each start a line of their own;
			// only the first may follow other words.
			if line != "" && (i > 0 || len(line)+1+len(w) > width) {
				lines = append(lines, line)
				line = ""
			}
			if line != "" {
				line += " "
			}
			line += w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// splitLong cuts a word longer than width after its slashes (a path), so
// that no line runs past width when it can be helped.
func splitLong(w string, width int) []string {
	if len(w) <= width || width <= 0 {
		return []string{w}
	}
	var parts []string
	for len(w) > width {
		i := strings.LastIndex(w[:width], "/")
		if i <= 0 {
			break
		}
		parts = append(parts, w[:i+1])
		w = w[i+1:]
	}
	return append(parts, w)
}
