package child

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/hotcluster/hotcluster/child/internal/protocol"
)

// ErrNoChannel is returned by Send when the worker has no message channel:
// run by hand, or under a master started with --ipc off (the default for
// programs other than node; give --ipc on).
var ErrNoChannel = errors.New("child: no message channel (HOTCLUSTER_IPC_FD)")

// channel is the worker's end of its message channel, opened once.
type channel struct {
	once     sync.Once
	f        *os.File
	err      error
	mu       sync.Mutex // serialises writes: one message per line
	messages chan json.RawMessage
	gone     chan struct{}
}

var ch channel

func (c *channel) open() (*os.File, error) {
	c.once.Do(func() {
		c.messages = make(chan json.RawMessage, 64)
		c.gone = make(chan struct{})
		s := os.Getenv(protocol.EnvIPCFd)
		os.Unsetenv(protocol.EnvIPCFd)
		fd, err := strconv.Atoi(s)
		if s == "" || err != nil || fd < 3 {
			c.err = ErrNoChannel
			return
		}
		syscall.CloseOnExec(fd) // our subprocesses must not hold it
		c.f = os.NewFile(uintptr(fd), "hotcluster-ipc")
		go c.read()
	})
	return c.f, c.err
}

// read delivers the master's messages until end of file, which means the
// master is gone; messages nobody receives are dropped, never blocking it.
func (c *channel) read() {
	defer close(c.gone)
	sc := bufio.NewScanner(c.f)
	sc.Buffer(make([]byte, 64<<10), protocol.IPCMaxLine)
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		if !json.Valid(line) {
			continue
		}
		select {
		case c.messages <- line:
		default:
		}
	}
}

// Send sends v, encoded as JSON, to the master: the string "ready" counts as
// READY=1 (as PM2's process.send('ready') does). It is safe for concurrent
// use.
func Send(v any) error {
	f, err := ch.open()
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("child: send: %w", err)
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("child: send: %w", err)
	}
	return nil
}

// Messages returns the messages from the master, one JSON value each. It is
// nil without a message channel. Messages arriving while 64 wait unread
// are dropped.
func Messages() <-chan json.RawMessage {
	if _, err := ch.open(); err != nil {
		return nil
	}
	return ch.messages
}

// MasterGone is closed when the master's end of the message channel closes:
// the master has exited. It is nil without a message channel.
func MasterGone() <-chan struct{} {
	if _, err := ch.open(); err != nil {
		return nil
	}
	return ch.gone
}

// Broadcast asks the master to deliver v to every worker of this one's
// generation, this one included, on their message channels.
func Broadcast(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("child: broadcast: %w", err)
	}
	return Send(struct {
		Cmd  string          `json:"cmd"`
		Data json.RawMessage `json:"data"`
	}{"hotcluster:broadcast", data})
}
