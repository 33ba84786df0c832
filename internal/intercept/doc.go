// Package intercept gives a worker that binds its own port the master's
// listening socket instead, and tells the master when a worker calls
// listen(2) on one of its sockets. It is how unmodified programs
// (`python3 -m http.server 8000`, a Node `app.listen(3000)`, a static Go
// binary calling net.Listen) run under hotcluster without taking fd 3.
//
// Invariant: a worker's bind(2) or listen(2) is never left waiting on the
// master. Each is answered by a goroutine of the worker's own (not the
// pool's loop) with a handful of non-blocking system calls; if the master
// is gone, the kernel answers ENOSYS for it (the notification descriptor
// closes with the master), the worker itself dies with the master
// (PR_SET_PDEATHSIG, package workers), and what it started dies by the
// master's keeper (package keeper) where the keeper reaches it; a process
// out of its reach lives on with its bind answered ENOSYS. A bind that does not name a --listen
// address, or that the master cannot handle, continues to the kernel
// untouched (SECCOMP_USER_NOTIF_FLAG_CONTINUE), so a worker gets exactly
// the result it would get without hotcluster.
//
// # Protocol
//
// The master makes a socket pair per worker ([Pair]) and passes one end to
// the worker's shim, the re-exec of hotcluster's own binary that execve()s
// the worker's command. Just before that execve the shim calls [Install]:
// it loads a seccomp filter of seven classic BPF instructions (see
// program) that turns the bind and listen system calls of this process,
// and of every process it later starts, into user notifications
// (SECCOMP_RET_USER_NOTIF), and sends the notification descriptor to the
// master over the pair (SCM_RIGHTS). The filter is inherited across fork
// and execve, so a pre-forking server (gunicorn, puma clustered, a C
// server that forks after bind) and a wrapper that forks the server (sh,
// npm) are covered too. The master's [Supervisor] then answers each
// notification:
//
//   - bind of an address that matches a listener (same port, a compatible
//     host, the same socket type; see match): the master's socket for that
//     listener is put in the worker's descriptor slot
//     (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SETFD, keeping the
//     slot's close-on-exec flag) and bind returns 0;
//   - listen on a descriptor that is one of the master's stream sockets
//     (inherited on fd 3… or put there by a bind): the worker is listening
//     on it; listen returns 0 without touching the socket, which has
//     listened since the master bound it, so a program's small backlog
//     (Python's 5) does not shrink the queue the whole generation shares;
//   - anything else continues untouched.
//
// # Safety
//
// The sockaddr is read from the worker's memory (process_vm_readv), and
// the notification is checked to be still valid afterwards
// (SECCOMP_IOCTL_NOTIF_ID_VALID): the thread that made it was alive
// throughout, so its PID was not reused and the bytes are its own. Every
// other look into the worker (its descriptor, its working directory) is
// checked the same way. A worker that rewrites the address after it was
// read gains nothing: a matched bind is answered by the master, which
// never binds anything itself, and any other continues to the kernel,
// which reads the address again and applies its usual rules.
//
// Installing a filter needs CAP_SYS_ADMIN or PR_SET_NO_NEW_PRIVS. A shim
// without the capability (a master that is not root, or workers run as
// another user) sets no_new_privs, which its worker and all its
// descendants keep: a setuid or file-capability program started inside a
// worker (sudo, su) gains no privileges. The master logs it once.
//
// # Linux notes
//
// It needs Linux 5.9 (ADDFD), pidfd_getfd (5.6) to see the type of the
// socket being bound, and a seccomp policy that lets the shim load a
// filter; [Available] tells whether the kernel offers user notification
// at all, and a shim that cannot install the filter says why, so that the
// master falls back to today's behaviour with one log line. Only the
// native system call ABI is filtered (amd64, arm64): 32-bit programs on a
// 64-bit kernel, and binds made through io_uring, are not intercepted.
package intercept
