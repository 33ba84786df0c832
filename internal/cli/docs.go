package cli

// `hotcluster completion` and `hotcluster man`: what a shell and man(1)
// need, made from the same commands and flags as --help.

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `Completes commands, and the flags of each command, by asking the hotcluster
binary being completed (bash and zsh), or from a list made now (fish). See
EXAMPLES for where to put the script.`,
		OnUsageError: onUsageError,
		BashComplete: completeWords("bash", "zsh", "fish"),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("completion: want one shell: bash, zsh or fish")
			}
			w := c.App.Writer
			switch sh := c.Args().First(); sh {
			case "bash":
				_, err := io.WriteString(w, bashCompletion)
				return err
			case "zsh":
				_, err := io.WriteString(w, zshCompletion)
				return err
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("completion: fish: %w", err)
				}
				_, err = io.WriteString(w, tidyFish(s))
				return err
			default:
				return usagef("completion: unknown shell %q: want bash, zsh or fish", sh)
			}
		},
	}
}

// completing reports whether the word being completed is a flag: the last
// word before the completion flag (urfave/cli's own completion reads it
// from os.Args too).
func completingFlag() bool {
	n := len(os.Args)
	return n >= 3 && strings.HasPrefix(os.Args[n-2], "-")
}

// completeFlags completes a command's flags, and no arguments: urfave/cli's
// default would offer the "help" it adds to every command.
func completeFlags(cmd *cli.Command) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if completingFlag() {
			cli.DefaultCompleteWithFlags(cmd)(c)
		}
	}
}

// completeWords completes a command's flags, and words as its argument.
func completeWords(words ...string) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if completingFlag() {
			cli.DefaultCompleteWithFlags(c.Command)(c)
			return
		}
		if c.NArg() == 0 {
			fmt.Fprintln(c.App.Writer, strings.Join(words, "\n"))
		}
	}
}

// bashCompletion asks the binary for the words that may follow (urfave/cli's
// --generate-bash-completion). It needs no bash-completion package, unlike
// urfave/cli's autocomplete/bash_autocomplete (MIT), which it follows; after
// "--" (run's worker command) it completes file names.
const bashCompletion = `# bash completion for hotcluster: source <(hotcluster completion bash)
_hotcluster_complete() {
	local cur=${COMP_WORDS[COMP_CWORD]} w opts
	local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
	for w in "${words[@]:1}"; do
		if [[ $w == -- ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
			return 0
		fi
	done
	# For a flag, "-" stands for what is typed: "--" would end the flags,
	# and the binary would run the command instead of completing it.
	if [[ $cur == -* ]]; then
		opts=$("${words[0]}" "${words[@]:1}" - --generate-bash-completion 2>/dev/null)
	else
		opts=$("${words[0]}" "${words[@]:1}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _hotcluster_complete hotcluster
`

// zshCompletion is urfave/cli's autocomplete/zsh_autocomplete (MIT) for
// hotcluster, with bashCompletion's care about "--".
const zshCompletion = `#compdef hotcluster
# zsh completion for hotcluster: save as _hotcluster in a directory of $fpath
_hotcluster() {
	local -a opts
	local cur=${words[-1]}
	if (( ${words[(I)--]} && ${words[(I)--]} < $#words )); then
		_files
		return
	fi
	# For a flag, "-" stands for what is typed: "--" would end the flags,
	# and the binary would run the command instead of completing it.
	if [[ "$cur" == "-"* ]]; then
		opts=("${(@f)$(${words[@]:0:#words[@]-1} - --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ "${opts[1]}" != "" ]]; then
		_describe 'values' opts
	else
		_files
	fi
}
if [[ "$funcstack[1]" == "_hotcluster" ]]; then
	_hotcluster "$@"
else
	compdef _hotcluster hotcluster
fi
`

// tidyFish drops what urfave/cli's fish script gets wrong for hotcluster:
// the backquotes that mark placeholders in usage texts, and the lines it
// repeats (the --help flag, which the app lists as well).
func tidyFish(s string) string {
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(s, "`", ""), "\n") {
		if strings.HasPrefix(l, "complete ") && seen[l] {
			continue
		}
		seen[l] = true
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:         "man",
		Usage:        "print the manual page (roff, section 1)",
		OnUsageError: onUsageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("man takes no arguments, got %q", c.Args().Slice())
			}
			_, err := c.App.Writer.Write(manPage(c.App))
			return err
		},
	}
}

// manPage renders the manual from the app's commands, flags and examples.
// urfave/cli's ToMan leaves out the commands' descriptions and examples,
// so the markdown is made here and rendered by the same go-md2man. It
// depends on nothing but the binary (no date, no machine's defaults), so
// that a release builds the same page twice.
func manPage(app *cli.App) []byte {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("%% %s 1 \"\" \"%s %s\" \"User Commands\"\n\n", strings.ToUpper(app.Name), app.Name, fullVersion())
	p("# NAME\n\n%s - %s\n\n", app.Name, md(app.Usage))
	p("# SYNOPSIS\n\n**%s** *COMMAND* [*OPTIONS*] [*ARGUMENTS*...]\n\n", app.Name)
	p("# DESCRIPTION\n\n%s\n\n", md(manDescription))
	p("# COMMANDS\n\n")
	for _, c := range app.VisibleCommands() {
		p("### %s %s\n\n%s\n\n", c.Name, md(c.ArgsUsage), md(upperFirst(c.Usage)+"."))
		if c.Description != "" {
			for _, para := range strings.Split(strings.TrimSpace(c.Description), "\n\n") {
				if strings.HasPrefix(para, " ") {
					p("```\n%s\n```\n\n", strings.TrimSpace(para))
				} else {
					p("%s\n\n", md(para))
				}
			}
		}
		for _, f := range c.VisibleFlags() {
			names, usage := flagHelp(f)
			p("**%s**\n: %s\n\n", md(names), md(usage))
		}
		if ex := examples[c.Name]; len(ex) > 0 {
			p("Examples:\n\n")
			for _, e := range ex {
				p("```\n# %s\n%s\n```\n\n", e.what, e.command)
			}
		}
	}
	p("# EXIT STATUS\n\n0 on success; 1 when something failed at run time (an address in use, a missing worker command, a first generation that cannot start, a failed reload); 2 for a bad command line.\n\n")
	p("# SIGNALS\n\nTo the master of **hotcluster run**: HUP reloads (a new generation, the old one drains once it is ready); USR2 upgrades hotcluster's own binary in place; TERM and INT drain every worker and exit, a second one 500ms or more later kills them at once; TTIN and TTOU add and remove a worker.\n\n")
	p("# ENVIRONMENT\n\n**NO_COLOR**\n: no colours, also on a terminal.\n\n**XDG_RUNTIME_DIR**\n: where control sockets live: $XDG_RUNTIME_DIR/hotcluster/NAME.sock (root: /run/hotcluster).\n\n**LISTEN_FDS**, **NOTIFY_SOCKET**\n: from systemd: sockets to serve instead of binding, and where READY=1 goes.\n\n")
	p("# FILES\n\n**./hotcluster.toml**\n: read by **hotcluster run** when it exists (see **--config** and **hotcluster init**).\n\n")
	p("# SEE ALSO\n\nsystemd.service(5), systemd.socket(5), sd_notify(3), sd_listen_fds(3); the README, docs/operations.md, docs/workers.md and docs/servers.md of hotcluster's source.\n")
	return md2man.Render([]byte(b.String()))
}

const manDescription = `hotcluster runs any server program as a group of worker processes that share the master's listening sockets, and replaces the group without dropping a connection: on SIGHUP, on a file change, and across upgrades of hotcluster's own binary. Workers inherit the sockets as fds 3, 4, ... through systemd's socket-activation protocol (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) and report readiness on their own NOTIFY_SOCKET, so any language works.`

// md escapes what markdown would take for markup in help text.
func md(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `_`, `\_`, "`", "\\`", `[`, `\[`, `]`, `\]`, `<`, `\<`, `>`, `\>`).Replace(s)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
