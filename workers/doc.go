// Package workers supervises generations of worker processes: it spawns
// them with the worker contract, decides when a generation is ready, moves
// the traffic to it through a [Sockets] implementation, drains the previous
// one, and respawns workers that die.
//
// Invariant: a generation receives traffic only after every one of its
// workers is ready, and an older generation is told to stop only after the
// traffic has moved; at every instant the master holds every listening
// socket, so connections wait in a kernel backlog rather than being refused.
//
// # Ownership
//
// All state lives in the goroutine that runs [Pool.Run]; other goroutines
// (signal handlers, timers, each worker's own goroutines) send it requests
// and events. Each worker has one goroutine that forked it from a locked OS
// thread and waits for it (PR_SET_PDEATHSIG fires when that thread ends,
// go.dev/issue/27505, so the thread lives exactly as long as the worker),
// two that copy its output line by line, one that reads its notify socket,
// and with bind interception one that answers its bind and listen calls
// (see Config.Intercept). Run returns only after all of them ended.
//
// # Spawning
//
// Go cannot run code between fork and exec, so a worker starts as a re-exec
// of hotcluster's own binary (/proc/self/exe with HOTCLUSTER_SHIM=<master pid>; see
// [IsShim] and [ExecShim]) that sets LISTEN_PID to its own PID and execve()s
// the user's command, which keeps the PID. Sockets arrive as close-on-exec
// duplicates made through SyscallConn and land on fds 3… in the child; their
// O_NONBLOCK flag is never touched. With bind interception (the default
// where the kernel allows it) the shim also loads a seccomp filter, last
// before the execve and on the thread that execs, that sends the worker's
// bind and listen calls to the master (package internal/intercept): a bind
// of a listener's address gets the master's socket, a listen on one makes
// the worker listening. Every worker has its own process group;
// the stop signal goes to the group, and when the worker exits whatever it
// left in the group is killed (the worker is waited for with WNOWAIT first,
// so its PID, and so the group's ID, cannot be reused meanwhile).
//
// # Output
//
// A worker's stdout and stderr are pipes the pool reads line by line and
// hands, as a [Line] (generation, slot, PID, stream, time, text), to
// [Config.Lines]: presentation (prefixes, colours, formats, where lines go)
// is the caller's. A line longer than [MaxLine] is cut there. The readers
// never wait for anyone but the worker: Config.Lines must not block.
//
// # Rolling reloads
//
// With Config.Rollout a reload replaces K slots at a time (see rollout):
// the new generation's workers for K slots start, once all are ready
// Sockets.Move sends those slots' connections to them, the old workers of
// those slots drain, and the next batch starts once they have exited, so
// that at most N+K workers live. The old generation serves (it is
// p.current) until the last batch; the new one stays starting until then.
// A failed batch rolls back: the replaced slots get workers of the old
// generation again (standbys, K at a time), move back, and the new
// generation's workers drain; the reload then reports GenFailed. Scaling
// and recycling wait for the rollout's end.
//
// # Readiness
//
// See [ReadyMode]: under ReadyAuto a worker that says nothing is ready once
// it listens on every listener. A generation that is not ready within ReadyTimeout, or
// one of whose workers exits first, is killed and reported with the
// worker's exit status and last lines of output; the serving generation
// goes on. The first generation failing ends Run with an error.
package workers
