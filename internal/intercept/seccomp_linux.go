package intercept

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's structures of seccomp user notification
// (include/uapi/linux/seccomp.h); x/sys has the ioctl numbers but not
// these. Their sizes are part of the ioctl numbers, which the tests check.
type (
	seccompData struct {
		Nr                 int32
		Arch               uint32
		InstructionPointer uint64
		Args               [6]uint64
	}
	seccompNotif struct {
		ID    uint64
		PID   uint32 // the thread's ID, in the master's PID namespace
		Flags uint32
		Data  seccompData
	}
	seccompNotifResp struct {
		ID    uint64
		Val   int64
		Error int32 // a negated errno
		Flags uint32
	}
	seccompNotifAddfd struct {
		ID         uint64
		Flags      uint32
		Srcfd      uint32
		Newfd      uint32
		NewfdFlags uint32
	}
)

// seccomp calls seccomp(2).
func seccomp(op, flags uintptr, arg unsafe.Pointer) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, op, flags, uintptr(arg))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// waitKillableRecv is SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 5.19):
// once the master has received a notification, the worker's thread waits
// for the answer without being interrupted by a signal it handles (Go's
// preemption signal, SIGCHLD), which would withdraw the notification and
// restart the system call. Older kernels refuse it with EINVAL; the filter
// then goes without.
const waitKillableRecv = unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

// ioctl calls ioctl(2) on the notification descriptor.
func ioctl(fd int, req uint, arg unsafe.Pointer) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

// recv takes the next notification. It blocks when none is pending: call
// it only once poll said one is. ENOENT: the one pending was withdrawn
// (its thread was killed) before it could be taken.
func recv(fd int, n *seccompNotif) error {
	*n = seccompNotif{} // the kernel insists on a zeroed buffer
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
	return err
}

// respond answers notification id: the system call returns val, or fails
// with errno when it is not 0, or with cont runs as if nothing had
// intercepted it. ENOENT (the thread is gone, or was interrupted) is no
// error: nobody waits for the answer any more.
func respond(fd int, id uint64, val int64, errno unix.Errno, cont bool) error {
	r := seccompNotifResp{ID: id, Val: val, Error: -int32(errno)}
	if cont {
		r.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
	}
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// valid reports whether notification id still waits for its answer: its
// thread is alive and still in the system call, so what was read from it
// meanwhile (its memory, its descriptors) was its own.
func valid(fd int, id uint64) bool {
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
	return err == nil
}

// addfd puts src into the notifying process's descriptor slot newfd,
// replacing what was there as dup2 does.
func addfd(fd int, id uint64, src, newfd int, cloexec bool) error {
	a := seccompNotifAddfd{ID: id, Flags: unix.SECCOMP_ADDFD_FLAG_SETFD, Srcfd: uint32(src), Newfd: uint32(newfd)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	_, err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
	if err != nil {
		return fmt.Errorf("SECCOMP_IOCTL_NOTIF_ADDFD: %w", err)
	}
	return nil
}
