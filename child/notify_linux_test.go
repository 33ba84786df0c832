package child

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

func TestSendNotify(t *testing.T) {
	t.Parallel()
	path := listenNotify(t)
	abstract, err := net.ListenUnixgram("unixgram", &net.UnixAddr{
		Name: fmt.Sprintf("@hotcluster-child-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
		Net:  "unixgram",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer abstract.Close()
	for _, c := range []*net.UnixConn{path, abstract} {
		addr := c.LocalAddr().String()
		if err := sendNotify(addr, "READY=1\nSTATUS=up"); err != nil {
			t.Fatalf("sendNotify(%s): %v", addr, err)
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "READY=1\nSTATUS=up" {
			t.Errorf("%s received %q, %v", addr, buf[:n], err)
		}
	}
	if err := sendNotify("", "READY=1"); err != nil {
		t.Errorf("sendNotify without a socket: %v", err)
	}
	if err := sendNotify(path.LocalAddr().String()+".missing", "READY=1"); err == nil {
		t.Errorf("sendNotify to a missing socket succeeded")
	}
}
