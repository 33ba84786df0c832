package intercept

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// auditArch is the AUDIT_ARCH value of the system call ABI the filter
// intercepts: the one this binary, and so the shim, runs in.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("bind interception: not built for %s (amd64 and arm64 are)", runtime.GOARCH)
}

// program is the filter the shim loads. It is assembled by hand because it
// is seven instructions: libseccomp-golang would need cgo in the shim, and
// an assembler (golang.org/x/net/bpf) would be a dependency for what the
// table below says plainly. The kernel verifies it when it is loaded, and
// the tests load it and check what it lets through.
//
//	0  A = arch                  ; seccomp_data.arch
//	1  if A != native goto 5     ; another ABI (x32 or 32-bit on amd64): allow
//	2  A = nr                    ; seccomp_data.nr
//	3  if A == bind goto 6
//	4  if A == listen goto 6
//	5  return ALLOW
//	6  return USER_NOTIF
//
// On amd64 an x32 system call has bit 30 set in its number, so it never
// equals bind or listen and is allowed as well.
func program(arch uint32) []unix.SockFilter {
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
		// Offsets in struct seccomp_data.
		offNr   = uint32(unsafe.Offsetof(seccompData{}.Nr))
		offArch = uint32(unsafe.Offsetof(seccompData{}.Arch))
	)
	return []unix.SockFilter{
		{Code: ld, K: offArch},
		{Code: jeq, Jt: 0, Jf: 3, K: arch},
		{Code: ld, K: offNr},
		{Code: jeq, Jt: 2, Jf: 0, K: unix.SYS_BIND},
		{Code: jeq, Jt: 1, Jf: 0, K: unix.SYS_LISTEN},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		{Code: ret, K: unix.SECCOMP_RET_USER_NOTIF},
	}
}

// Available reports whether this kernel, under the seccomp policy this
// process runs with, offers seccomp user notification: nil if so, else an
// error saying why not (a kernel before 5.0, a container profile that
// refuses seccomp(2), an architecture the filter is not written for).
// Whether a shim may then load the filter is known only when it tries
// (see Install); whether the kernel can put a socket into a worker (5.9)
// only at the first bind.
func Available() error {
	if _, err := auditArch(); err != nil {
		return err
	}
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	if _, err := seccomp(unix.SECCOMP_GET_ACTION_AVAIL, 0, unsafe.Pointer(&action)); err != nil {
		switch {
		case errors.Is(err, unix.EOPNOTSUPP):
			return fmt.Errorf("seccomp user notification: this kernel does not have it (Linux 5.0 added it; hotcluster needs 5.9)")
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
			return fmt.Errorf("seccomp: not available (%w): a kernel without CONFIG_SECCOMP_FILTER, or a sandbox that hides it", err)
		default:
			return fmt.Errorf("seccomp: %w (a sandbox's seccomp profile refuses it)", err)
		}
	}
	return nil
}

// Pair makes the socket pair a worker's shim sends its notification
// descriptor over: ours stays with the master (non-blocking, so that
// reading it waits in the netpoller), theirs goes to the shim. Both are
// close-on-exec; the shim keeps theirs so until it has sent.
func Pair() (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("bind interception: socket pair: %w", err)
	}
	unix.SetNonblock(fds[0], true)
	return os.NewFile(uintptr(fds[0]), "intercept"), os.NewFile(uintptr(fds[1]), "intercept"), nil
}

// What the shim tells the master, with the notification descriptor or
// without.
const (
	msgInstalled  = "installed"
	msgNoNewPrivs = "installed no_new_privs"
	msgFailed     = "failed "
)

// Install, called by the shim on the thread that then calls execve, loads
// the filter for that thread and so for the program it becomes and every
// process that one starts, and sends the notification descriptor over sock
// (the shim's end of Pair), which it closes. A filter the kernel or a
// sandbox refuses is no error: the master is told why, and the worker runs
// as it would without interception. The error is for a master that could
// not be told (it is gone, or the descriptor is not a socket): the shim
// must not exec then, for the worker's binds would fail with ENOSYS.
func Install(sock int) error {
	defer unix.Close(sock)
	arch, err := auditArch()
	if err != nil {
		return send(sock, msgFailed+err.Error(), -1)
	}
	filter := program(arch)
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	load := func(flags uintptr) (int, error) {
		return seccomp(unix.SECCOMP_SET_MODE_FILTER, flags, unsafe.Pointer(&prog))
	}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | waitKillableRecv)
	nnp := false
	fd, err := load(flags)
	if errors.Is(err, unix.EINVAL) {
		flags &^= waitKillableRecv
		fd, err = load(flags)
	}
	if errors.Is(err, unix.EACCES) {
		// Without CAP_SYS_ADMIN a filter needs no_new_privs, and then it
		// binds whatever the worker starts (see the package comment).
		if perr := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); perr != nil {
			return send(sock, msgFailed+fmt.Sprintf("set no_new_privs: %v", perr), -1)
		}
		nnp = true
		fd, err = load(flags)
	}
	runtime.KeepAlive(filter)
	if err != nil {
		return send(sock, msgFailed+fmt.Sprintf("load the seccomp filter: %v", err), -1)
	}
	defer unix.Close(fd) // close-on-exec as well, as the kernel makes it
	msg := msgInstalled
	if nnp {
		msg = msgNoNewPrivs
	}
	return send(sock, msg, fd)
}

// send writes one message on the pair, with fd attached if it is one.
func send(sock int, msg string, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	for {
		err := unix.Sendmsg(sock, []byte(msg), oob, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("bind interception: tell the master: %w", err)
		}
		return nil
	}
}

// parseReport reads what the shim sent: the descriptor (or -1) and, when
// the filter could not be loaded, why.
func parseReport(msg []byte, fds []int) (fd int, nnp bool, err error) {
	s := string(msg)
	switch {
	case s == msgInstalled || s == msgNoNewPrivs:
		if len(fds) != 1 {
			for _, f := range fds {
				unix.Close(f)
			}
			return -1, false, fmt.Errorf("the shim sent %d descriptors with its filter, want 1", len(fds))
		}
		return fds[0], s == msgNoNewPrivs, nil
	case strings.HasPrefix(s, msgFailed):
		for _, f := range fds {
			unix.Close(f)
		}
		return -1, false, errors.New(strings.TrimPrefix(s, msgFailed))
	}
	for _, f := range fds {
		unix.Close(f)
	}
	return -1, false, fmt.Errorf("the shim sent %.80q", s)
}
