package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/hotcluster/hotcluster/child"
)

func init() {
	roles.Register("hog-once", roleHogOnce)
	roles.Register("messenger", roleMessenger)
}

// roleHogOnce serves like lib; the first worker to claim $HOG_CLAIM (a
// file) also holds $HOG_MB MiB of touched memory, so that --max-memory
// replaces it, and its replacement does not.
func roleHogOnce() int {
	reportContract()
	var hog []byte
	if f, err := os.OpenFile(os.Getenv("HOG_CLAIM"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
		f.Close()
		var mb int
		fmt.Sscan(os.Getenv("HOG_MB"), &mb)
		hog = make([]byte, mb<<20)
		for i := range hog {
			hog[i] = byte(i)
		}
		fmt.Printf("HOGGING %d MiB pid=%d\n", mb, os.Getpid())
	}
	code := roleLibServe()
	_ = hog[len(hog):] // kept alive until the end
	return code
}

// roleMessenger serves like lib and answers messages from the master:
// {"echo":X} with {"echoed":X,"slot":N}, {"broadcast":X} by asking the
// master to broadcast {"bcast":X}, and {"bcast":X} with {"got":X,"slot":N}.
func roleMessenger() int {
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	msgs := child.Messages()
	if msgs == nil {
		fmt.Fprintln(os.Stderr, "messenger: no message channel")
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				var in struct {
					Echo, Broadcast, Bcast json.RawMessage
				}
				if json.Unmarshal(m, &in) != nil {
					continue
				}
				slot := child.WorkerID()
				switch {
				case in.Echo != nil:
					child.Send(map[string]any{"echoed": in.Echo, "slot": slot})
				case in.Broadcast != nil:
					child.Broadcast(map[string]any{"bcast": in.Broadcast})
				case in.Bcast != nil:
					child.Send(map[string]any{"got": in.Bcast, "slot": slot})
				}
			}
		}
	}()
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	if err := child.ServeHTTP(ctx, srv, ln, child.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
