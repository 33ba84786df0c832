package child

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child/internal/protocol"
	"golang.org/x/sys/unix"
)

// The one test of the package's message channel (it is opened once per
// process): messages both ways, then end of file as the master's death.
func TestMessageChannel(t *testing.T) {
	ch = channel{} // a fresh channel, also when run with -count > 1
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[0], true) // pollable, so the read deadline works
	master := os.NewFile(uintptr(fds[0]), "master")
	t.Setenv(protocol.EnvIPCFd, strconv.Itoa(fds[1]))
	if err := Send("ready"); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(protocol.EnvIPCFd) != "" {
		t.Error("HOTCLUSTER_IPC_FD still set: subprocesses would think they have the channel")
	}
	buf := make([]byte, 64)
	master.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := master.Read(buf)
	if err != nil || string(buf[:n]) != "\"ready\"\n" {
		t.Fatalf("master read %q, %v", buf[:n], err)
	}
	if _, err := master.WriteString("not json\n{\"to\":\"worker\"}\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-Messages():
		var v map[string]string
		if json.Unmarshal(m, &v) != nil || v["to"] != "worker" {
			t.Fatalf("message %s", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message from the master")
	}
	master.Close()
	select {
	case <-MasterGone():
	case <-time.After(10 * time.Second):
		t.Fatal("MasterGone not closed after the master's end closed")
	}
}
