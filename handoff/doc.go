// Package handoff owns the master's listening sockets and moves new
// connections from one worker generation to the next inside the kernel.
//
// Invariant: the master never closes a socket while it lives, and a
// generation receives connections only after [Sockets.Activate] pointed the
// traffic at it, which the worker group calls once the generation is ready.
//
// # Steered listeners (TCP and UDP)
//
// Each listen address owns a group of SO_REUSEPORT sockets bound to it, and a
// one-instruction classic BPF program (SO_ATTACH_REUSEPORT_CBPF, "return k")
// that decides which socket of the group receives new connections. Each
// generation is handed one socket of the group, one that no live generation
// holds. Activate rewrites the program to return the new generation's index,
// then waits until the old socket has nothing left that its workers must
// serve: no half-open handshake that started before the switch, an empty
// accept queue, and every accepted connection has had its first request
// bytes read (receive queue empty and data received, from the kernel's socket
// diagnostics). Only then may the old generation be told to stop, so that
// even a worker that calls a plain http.Server.Shutdown loses nothing
// (golang/go#75591).
//
// The group's sockets are created with Multipath TCP off: since Go 1.24
// net.Listen creates MPTCP sockets where it can, and those refuse the BPF
// option. Closing a socket of a group would reorder the indexes the program
// returns, hence the invariant above. A process of the same user could join
// the group; that is the price of SO_REUSEPORT.
//
// # Shared listeners (fallback)
//
// Unix sockets, and any listener whose group cannot be steered (the kernel
// refuses the program), use one socket for every generation. The socket
// stays open in the master, so connections wait in its backlog while
// generations change; workers that drain well lose nothing.
//
// # Descriptors
//
// Sockets cross exec only as close-on-exec duplicates made through
// SyscallConn ([Sockets.Files]), never through (*os.File).Fd or
// (*net.TCPListener).File, which clear O_NONBLOCK on the open file
// description that the master and every worker share.
package handoff
