// Package chaos injects faults into a running hotcluster and checks what it
// promises under them: workers SIGKILLed at random, a burst of SIGHUPs, new
// generations that crash, hang before ready or ignore the stop signal, a
// SIGKILLed master, and a thousand reloads in a row.
//
// The tests are behind the build tag chaos (go test ./... skips them, and
// this file is all the package holds without it); see scripts/chaos and
// docs/reliability.md:
//
//	go test -race -tags chaos ./e2e/chaos
//	go test -tags chaos ./e2e/chaos -args -chaos.kill-for 10s -chaos.reloads 100
//
// Each test builds the real hotcluster binary (go build of the module root)
// and uses the test binary itself, re-executed in a worker role, as the
// worker command: an HTTP server on the inherited socket through package
// child that says which process answered. Load comes from internal/loadgen,
// on 127.0.0.1 only. Synchronisation is on the master's output lines, the
// answers' bodies, and /proc (polled with a deadline); no test sleeps to wait
// for something.
package chaos
