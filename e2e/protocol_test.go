package e2e

import (
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"strings"
	"testing"
)

// The worker library is a module of its own and keeps its own copy of the
// contract's names (child/internal/protocol); the master's is
// internal/protocol. Every name they share must have the same value.
func TestProtocolConstantsAgree(t *testing.T) {
	t.Parallel()
	master := constants(t, "../internal/protocol/protocol.go")
	lib := constants(t, "../child/internal/protocol/protocol.go")
	if len(lib) < 10 {
		t.Fatalf("read %d constants from child's copy", len(lib))
	}
	for name, v := range lib {
		mv, ok := master[name]
		switch {
		case !ok:
			t.Errorf("child has %s = %s, which the master's protocol lacks", name, v)
		case mv != v:
			t.Errorf("%s: child says %s, the master %s", name, v, mv)
		}
	}
}

// constants returns the constants a file declares, by name, as their
// source text.
func constants(t *testing.T, path string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					var b strings.Builder
					printer.Fprint(&b, fset, vs.Values[i])
					out[n.Name] = b.String()
				}
			}
		}
	}
	return out
}
