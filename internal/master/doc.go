// Package master is the `hotcluster run` process: it owns the listening
// sockets, the control socket, the metrics port, the worker pool and, in
// development mode, the watcher and the builds, and composes them.
//
// Invariant: the control socket, the metrics port and every listening
// socket outlive the worker group. The development loop stops before the
// group drains, and the sockets are released only after the group has
// stopped, or once a new master (a binary upgrade) holds them.
//
// # Phases of Run
//
//  1. Serving. One group of actors (github.com/oklog/run): the pool, the
//     signals, the upgrade coordinator and what reacts to a hand-over, the
//     systemd notifier, the development loop (watcher, builds, keyboard),
//     the memory recycler, the memory trimmer, the foreign-socket watch,
//     the rescuer (internal/rescue: relays of stranded accept queues; once
//     interrupted it closes them and waits for their goroutines) and the
//     ready announcer. The pool is the one that ends the phase: it
//     returns once stopped (a stop signal, `hotcluster stop`, a hand-over,
//     or a first generation that failed) and every other actor is then
//     interrupted; each of them returns only when interrupted.
//  2. Draining the operations. The control socket and the metrics port,
//     served since before phase 1, stop: each waits, bounded, for what it
//     is answering. After a hand-over they stop at once, since the new
//     master answers.
//  3. Release. The listening sockets close (unix socket files are removed
//     unless a new master serves them), then the control socket (its file
//     removed likewise), the PID file (if it still names this master) and
//     the upgrader.
//
// # Binary upgrade
//
// On SIGUSR2 the coordinator (package upgrade) stores every socket and the
// generation numbers and re-executes the binary. The new master takes the
// sockets over, starts its first generation as a reload would, and once it
// serves the old one names it to systemd (MAINPID=), stops answering its
// control socket and drains its workers.
package master
