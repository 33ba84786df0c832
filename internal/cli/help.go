package cli

// How hotcluster's help reads. urfave/cli's templates print each flag as one
// tab-aligned line (run's ran to 352 columns) and wrap nothing in categories,
// so helpPrinter lays help out itself from the same *cli.App and
// *cli.Command: every line fits the terminal (80 columns when the output is
// not one), a flag's usage wraps beside its name or, when the names are
// long, under them, and a command's EXAMPLES follow its options.

import (
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

const (
	// defaultHelpWidth is the width of help that goes to a pipe or a file.
	defaultHelpWidth = 80
	// minHelpWidth keeps a very narrow terminal from one word per line.
	minHelpWidth = 40
	// nameColumn is the widest flag or command name that gets its usage on
	// the same line.
	nameColumn = 28
)

func init() {
	// A package variable of urfave/cli: every help it prints (--help, -h,
	// help COMMAND) goes through here.
	cli.HelpPrinter = helpPrinter
}

// helpWidth is the width of the terminal w is, or defaultHelpWidth.
func helpWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return defaultHelpWidth
	}
	// Through SyscallConn: Fd would put the file in blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return defaultHelpWidth
	}
	cols := 0
	rc.Control(func(fd uintptr) {
		if ws, err := unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ); err == nil {
			cols = int(ws.Col)
		}
	})
	switch {
	case cols == 0:
		return defaultHelpWidth
	case cols < minHelpWidth:
		return minHelpWidth
	}
	return cols
}

// helpPrinter is cli.HelpPrinter: templ is ignored, data is the *cli.App or
// *cli.Command whose help is asked for.
func helpPrinter(w io.Writer, _ string, data any) {
	width := helpWidth(w)
	var b strings.Builder
	switch d := data.(type) {
	case *cli.App:
		appHelp(&b, d, width)
	case *cli.Command:
		commandHelp(&b, d, width)
	default:
		return
	}
	io.WriteString(w, b.String())
}

func appHelp(b *strings.Builder, app *cli.App, width int) {
	section(b, "NAME")
	paragraphs(b, app.Name+" - "+app.Usage, 3, width)
	section(b, "USAGE")
	b.WriteString("   " + app.Name + " COMMAND [OPTIONS] [ARGUMENTS...]\n")
	b.WriteString("   " + app.Name + " help [COMMAND]\n")
	section(b, "VERSION")
	paragraphs(b, app.Version, 3, width)
	section(b, "COMMANDS")
	var cats []string
	byCat := map[string][][2]string{}
	for _, c := range app.VisibleCommands() {
		if _, ok := byCat[c.Category]; !ok {
			cats = append(cats, c.Category)
		}
		byCat[c.Category] = append(byCat[c.Category], [2]string{c.Name, c.Usage})
	}
	for i, cat := range cats {
		if cat != "" {
			if i > 0 {
				b.WriteString("\n")
			}
			b.WriteString("   " + cat + ":\n")
		}
		columns(b, byCat[cat], 3, width)
	}
	section(b, "GLOBAL OPTIONS")
	flagList(b, app.VisibleFlags(), width)
	b.WriteString("\nRun '" + app.Name + " help COMMAND' for a command's options and examples.\n")
}

func commandHelp(b *strings.Builder, c *cli.Command, width int) {
	section(b, "NAME")
	paragraphs(b, c.HelpName+" - "+c.Usage, 3, width)
	section(b, "USAGE")
	// Without --help, which every command has: `help run` and `run --help`
	// print the same (the flag is added to a command only when it runs).
	flags := slices.DeleteFunc(slices.Clone(c.VisibleFlags()), func(f cli.Flag) bool {
		return slices.Contains(f.Names(), "help")
	})
	usage := c.HelpName
	if len(flags) > 0 {
		usage += " [OPTIONS]"
	}
	if c.ArgsUsage != "" {
		usage += " " + c.ArgsUsage
	}
	shellLines(b, usage, 3, width)
	if c.Description != "" {
		section(b, "DESCRIPTION")
		paragraphs(b, c.Description, 3, width)
	}
	if len(flags) > 0 {
		section(b, "OPTIONS")
		var cats []string
		byCat := map[string][]cli.Flag{}
		for _, f := range flags {
			cat := ""
			if cf, ok := f.(cli.CategorizableFlag); ok {
				cat = cf.GetCategory()
			}
			if _, ok := byCat[cat]; !ok {
				cats = append(cats, cat)
			}
			byCat[cat] = append(byCat[cat], f)
		}
		// Uncategorised first, then the categories by name, as urfave/cli
		// orders them.
		slices.SortStableFunc(cats, func(a, b string) int {
			switch {
			case a == b:
				return 0
			case a == "":
				return -1
			case b == "":
				return 1
			}
			return strings.Compare(a, b)
		})
		for i, cat := range cats {
			if cat != "" {
				if i > 0 {
					b.WriteString("\n")
				}
				b.WriteString("   " + cat + ":\n")
			}
			flagList(b, byCat[cat], width)
		}
	}
	if ex := examples[c.Name]; len(ex) > 0 {
		section(b, "EXAMPLES")
		exampleList(b, ex, width)
	}
}

func section(b *strings.Builder, name string) {
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	b.WriteString(name + ":\n")
}

// flagHelp is one flag as help shows it: its names with the placeholder of
// its value ("-l, --listen [NAME=]ADDR") and its usage with the default.
func flagHelp(f cli.Flag) (names, usage string) {
	df, ok := f.(cli.DocGenerationFlag)
	if !ok {
		return strings.Join(f.Names(), ", "), ""
	}
	usage = df.GetUsage()
	placeholder := ""
	if parts := strings.Split(usage, "`"); len(parts) >= 3 {
		placeholder = parts[1]
		usage = strings.ReplaceAll(usage, "`", "")
	}
	if df.TakesValue() && placeholder == "" {
		placeholder = "VALUE"
	}
	var short, long []string
	for _, n := range f.Names() {
		if len(n) == 1 {
			short = append(short, "-"+n)
		} else {
			long = append(long, "--"+n)
		}
	}
	names = strings.Join(append(short, long...), ", ")
	if placeholder != "" {
		names += " " + placeholder
	}
	if def := defaultText(f, df); def != "" {
		usage += " (default: " + def + ")"
	}
	return names, usage
}

// defaultText is a flag's default as help says it; nothing for a switch
// that is off or a value that is empty.
func defaultText(f cli.Flag, df cli.DocGenerationFlag) string {
	def := df.GetDefaultText()
	switch d, err := time.ParseDuration(def); {
	case !df.TakesValue() && def == "false", def == "0s":
		return ""
	case err == nil && d > 0:
		return shortDuration(d)
	}
	return strings.Trim(def, `"`)
}

func flagList(b *strings.Builder, flags []cli.Flag, width int) {
	var rows [][2]string
	for _, f := range flags {
		n, u := flagHelp(f)
		rows = append(rows, [2]string{n, u})
	}
	columns(b, rows, 3, width)
}

// columns writes name-usage rows at indent: the usage wraps in a column
// after the widest name of at most nameColumn; a longer name has its usage
// on the next lines, in that column. On a terminal too narrow for a column
// of 30, every usage goes under its name.
func columns(b *strings.Builder, rows [][2]string, indent, width int) {
	col := 0
	for _, r := range rows {
		if n := len(r[0]); n <= nameColumn && n > col {
			col = n
		}
	}
	col += indent + 2
	if width-col < 30 {
		col = indent + 4
	}
	pad := strings.Repeat(" ", indent)
	for _, r := range rows {
		lines := wrapWords(r[1], width-col)
		if len(lines) == 0 {
			lines = []string{""}
		}
		first := pad + r[0]
		if len(first)+2 > col {
			b.WriteString(first + "\n")
		} else {
			b.WriteString(first + strings.Repeat(" ", col-len(first)) + lines[0] + "\n")
			lines = lines[1:]
		}
		for _, l := range lines {
			b.WriteString(strings.Repeat(" ", col) + l + "\n")
		}
	}
}

// paragraphs writes text at indent, wrapped to width. Blank lines separate
// paragraphs, whose lines are joined and wrapped again; a line that starts
// with a space (a command, a table) is kept as it is.
func paragraphs(b *strings.Builder, text string, indent, width int) {
	pad := strings.Repeat(" ", indent)
	var para []string
	flush := func() {
		for _, l := range wrapWords(strings.Join(para, " "), width-indent) {
			b.WriteString(pad + l + "\n")
		}
		para = nil
	}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
			b.WriteString("\n")
		case strings.HasPrefix(line, " "):
			flush()
			shellLines(b, strings.TrimSpace(line), indent+len(line)-len(strings.TrimLeft(line, " ")), width)
		default:
			para = append(para, line)
		}
	}
	flush()
}

// example is one entry of a command's EXAMPLES: what it does, and the
// command line.
type example struct{ what, command string }

func exampleList(b *strings.Builder, ex []example, width int) {
	for i, e := range ex {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, l := range wrapWords(e.what, width-5) {
			b.WriteString("   # " + l + "\n")
		}
		shellLines(b, e.command, 3, width)
	}
}

// shellLines writes a command line at indent; one too long for width is
// continued on the next lines with " \", breaking between words (a quoted
// word stays whole), so that it can still be pasted into a shell.
func shellLines(b *strings.Builder, line string, indent, width int) {
	pad := strings.Repeat(" ", indent)
	words := shellWords(line)
	cur := pad
	for i, w := range words {
		if i > 0 && len(cur)+1+len(w)+2 > width {
			b.WriteString(cur + " \\\n")
			cur = pad + "    " + w
			continue
		}
		if i > 0 {
			cur += " "
		}
		cur += w
	}
	b.WriteString(cur + "\n")
}

// shellWords splits a command line at the spaces outside quotes.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == ' ':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteRune(r)
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}

// examples are the EXAMPLES of each command's help (and of the man page).
var examples = map[string][]example{
	"run": {
		{"two workers of a Go server on port 8080; kill -HUP <master pid> replaces them without dropping a request",
			"hotcluster run --listen web=127.0.0.1:8080 --workers 2 -- ./server --flag"},
		{"a Node.js server that listens on {fd: 3} and calls process.send('ready')",
			"hotcluster run --listen :3000 -- node server.js"},
		{"gunicorn takes the sockets from LISTEN_FDS itself (see docs/servers.md for other servers)",
			"hotcluster run --listen :8000 --workers 4 -- gunicorn --workers 1 --preload app:app"},
		{"as root: bind port 80, run the workers as www-data",
			"hotcluster run --listen :80 --user www-data --name shop -- /srv/shop/server"},
		{"development: rebuild and reload on every change of a .go or .html file",
			"hotcluster run --listen :8080 --workers 2 --watch . --ext .go,.html --build 'go build -o {out} ./cmd/server' -- {out} --dev"},
		{"the settings from a file (hotcluster init writes an example)",
			"hotcluster run --config /etc/shop/hotcluster.toml"},
	},
	"unit": {
		{"print a service and a socket unit for a run command line",
			"hotcluster unit --name shop --socket -- --listen web=:8080 --workers 4 -- /srv/shop/server"},
		{"write them, then start the service",
			"hotcluster unit --name shop --out /etc/systemd/system -- --listen :8080 -- ./server && systemctl daemon-reload && systemctl enable --now shop"},
	},
	"status": {
		{"the only instance running (as root, also the ones systemd runs)", "hotcluster status"},
		{"one of several, as JSON", "hotcluster status --name shop --json"},
	},
	"reload": {
		{"replace the workers; exit 1 and why if the new generation does not start", "hotcluster reload --name shop"},
	},
	"scale": {
		{"one worker more, then exactly 4", "hotcluster scale +1 && hotcluster scale 4"},
	},
	"send": {
		{"a message to every worker of the serving generation (run --ipc on)", `hotcluster send '{"cmd":"flush"}'`},
		{"to the worker in slot 1 only", `hotcluster send --worker 1 '"ping"'`},
	},
	"completion": {
		{"bash, for this shell", "source <(hotcluster completion bash)"},
		{"bash, for every shell of this user", "hotcluster completion bash > ~/.local/share/bash-completion/completions/hotcluster"},
		{"zsh (a directory in $fpath)", "hotcluster completion zsh > ~/.zfunc/_hotcluster"},
		{"fish", "hotcluster completion fish > ~/.config/fish/completions/hotcluster.fish"},
	},
	"man": {
		{"read it", "hotcluster man | man -l -"},
		{"install it", "hotcluster man > /usr/local/share/man/man1/hotcluster.1"},
	},
}
