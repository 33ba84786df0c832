package unitfile

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// escapeSpecifiers doubles every '%': systemd expands "%n", "%h" and the
// like in almost every setting (systemd.unit(5), "Specifiers").
func escapeSpecifiers(s string) string {
	return strings.ReplaceAll(s, "%", "%%")
}

// execWord writes s as one word of an ExecStart=-style command line, so that
// the program receives exactly s: "$$" because systemd substitutes variables
// ("$FOO", "${FOO}") when it starts the command, "%%" for specifiers, and
// double quotes with C escapes for anything else that is not plainly safe
// (systemd.service(5), "Command lines"; systemd.syntax(7), "Quoting"). A lone
// ";" would separate two commands and an empty word would vanish: both are
// quoted. s must not contain NUL, which no argument can.
func execWord(s string) string {
	s = strings.ReplaceAll(escapeSpecifiers(s), "$", "$$")
	if s != "" && strings.IndexFunc(s, unsafeInWord) < 0 {
		return s
	}
	return quote(s)
}

// unsafeInWord reports whether r needs quoting in a command line word.
func unsafeInWord(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("-_./:=,+@%$", r)
}

// quote wraps s in double quotes for a setting that systemd unquotes: '\\'
// and '"' are escaped, control characters and bytes that are not UTF-8 are
// written as C escapes, and the rest (spaces, single quotes, ';', any
// printable UTF-8) stays as it is.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
	return b.String()
}

// plainValue checks a value that systemd takes as written, without
// unquoting (Description=, WorkingDirectory=, ListenStream=, …): a line
// break would end the setting, systemd strips surrounding whitespace, and a
// trailing backslash would continue the line.
func plainValue(field, v string) error {
	switch {
	case strings.IndexFunc(v, isControl) >= 0:
		return fmt.Errorf("unitfile: %s %q: control characters cannot be written in a unit file", field, v)
	case !utf8.ValidString(v):
		return fmt.Errorf("unitfile: %s %q: not valid UTF-8", field, v)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("unitfile: %s %q: systemd strips leading and trailing spaces", field, v)
	case strings.HasSuffix(v, `\`):
		return fmt.Errorf("unitfile: %s %q: a trailing backslash would continue the line in a unit file", field, v)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
