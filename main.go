// Command hotcluster runs any server program as a group of worker processes
// that share the master's listening sockets, and replaces the group without
// dropping a connection: on SIGHUP, on a file change, and across upgrades
// of hotcluster's own binary. See README.md and docs/.
package main

import (
	"os"

	"github.com/hotcluster/hotcluster/internal/cli"
	"github.com/hotcluster/hotcluster/workers"
)

func main() {
	// First of all: a worker's start is a re-execution of this binary
	// (see workers.ExecShim), which must do nothing else.
	if workers.IsShim() {
		os.Exit(workers.ExecShim())
	}
	os.Exit(cli.Main(os.Args))
}
