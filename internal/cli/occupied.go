package cli

import (
	"context"
	"errors"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/handoff"
	"github.com/hotcluster/hotcluster/internal/sockowner"
)

// occupiedError makes an address held by someone else a usage error (exit
// 2) that names, for an owner that is a hotcluster master or one of its
// workers, the instance. ownControl is this master's control socket, which
// does not answer yet.
func occupiedError(ctx context.Context, err error, ownControl string) error {
	var iu *handoff.InUseError
	if !errors.As(err, &iu) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	masters := make(map[int]string)
	for _, in := range control.Running(ctx, control.Dirs()) {
		if in.Socket == ownControl {
			continue
		}
		var st control.Status
		if control.Call(ctx, in.Socket, control.Request{Cmd: control.CmdStatus}, &st) == nil && st.PID > 0 {
			masters[st.PID] = in.Name
		}
	}
	for _, f := range iu.Sockets {
		for i := range f.Owners {
			o := &f.Owners[i]
			for _, pid := range append([]int{o.PID}, sockowner.Ancestors(o.PID)...) {
				if name, ok := masters[pid]; ok {
					o.Instance = name
					break
				}
			}
		}
	}
	return &usageError{iu}
}

// listenerMode says how a listener moves traffic, for the log: "steered,
// ebpf", "steered, cbpf: why", "shared: why".
func listenerMode(l handoff.Listener) string {
	mode := l.Mode.String()
	if l.Selector != "" {
		mode += ", " + l.Selector
	}
	if l.Why != "" {
		mode += ": " + l.Why
	}
	return mode
}

// foreignOwners describes who holds a foreign socket, for status.
func foreignOwners(f handoff.Foreign) []control.SocketOwner {
	out := []control.SocketOwner{}
	for _, o := range f.Owners {
		out = append(out, control.SocketOwner{PID: o.PID, Command: o.Command})
	}
	return out
}
