package e2e

import (
	"testing"

	"github.com/hotcluster/hotcluster/internal/testroles"
)

// A Ruby server that binds its own port with TCPServer.new, alone and
// pre-forking two children after its bind (as puma clustered and unicorn
// do), reloads as the other unmodified programs (TestUnmodifiedReloads).
func TestUnmodifiedRuby(t *testing.T) {
	t.Parallel()
	needIntercept(t)
	for _, tc := range []struct{ name, host, prefork string }{
		{"ruby", "127.0.0.1", "0"},
		{"ruby-prefork", "0.0.0.0", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ruby := testroles.Tool(t, "ruby")
			port := freePort(t)
			unmodifiedReloads(t, port, []string{ruby, "testdata/unmodified/server.rb", port, tc.host, tc.prefork}, true)
		})
	}
}
