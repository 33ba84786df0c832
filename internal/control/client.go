package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoMaster is returned when no master serves the socket.
var ErrNoMaster = errors.New("control: no master is running there")

// ErrNoAnswer is returned when the master closed the connection without
// answering: it was stopping.
var ErrNoAnswer = errors.New("control: the master closed the connection without an answer (it may be stopping)")

// RemoteError is a request the master refused or failed.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// dial connects to the master's socket, with errors that say what to do.
func dial(ctx context.Context, path string) (*net.UnixConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("%s: %w", path, ErrNoMaster)
		}
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// open connects to path for as long as ctx lasts; done closes.
func open(ctx context.Context, path string) (c *net.UnixConn, done func(), err error) {
	if c, err = dial(ctx, path); err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	return c, func() { stop(); c.Close() }, nil
}

// Call sends req to the master at path and decodes the result of its
// response into result (unless nil). It returns once the master answered:
// for reload, once the new generation is ready or failed.
func Call(ctx context.Context, path string, req Request, result any) error {
	if err := req.Check(); err != nil {
		return err
	}
	c, done, err := open(ctx, path)
	if err != nil {
		return err
	}
	defer done()
	resp, _, err := exchange(c, req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if !resp.OK {
		return &RemoteError{resp.Error}
	}
	if result != nil && len(resp.Result) > 0 {
		return json.Unmarshal(resp.Result, result)
	}
	return nil
}

func exchange(c *net.UnixConn, req Request) (Response, *bufio.Reader, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, nil, err
	}
	// A master that refuses the request may close before it is all
	// written: its answer is still there to read, and says more.
	_, werr := c.Write(append(b, '\n'))
	br := bufio.NewReaderSize(c, 64<<10)
	line, err := br.ReadBytes('\n')
	// A connection still in the backlog of a master that exits is reset.
	if err == io.EOF || errors.Is(err, unix.ECONNRESET) || errors.Is(werr, unix.ECONNRESET) {
		return Response{}, nil, ErrNoAnswer
	}
	if err != nil && werr != nil {
		return Response{}, nil, werr
	}
	if err != nil {
		return Response{}, nil, err
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, nil, fmt.Errorf("the master's answer: %w", err)
	}
	return resp, br, nil
}

// Events streams the master's events to each until ctx ends, the master
// stops (nil) or each returns an error.
func Events(ctx context.Context, path string, each func(json.RawMessage) error) error {
	return Stream(ctx, path, Request{Cmd: CmdEvents}, nil, each)
}

// Stream sends req, a request that streams (events, logs), gives the
// response's result to started (unless nil), then each line to each
// until ctx ends, the master ends the stream (nil) or each returns an
// error.
func Stream(ctx context.Context, path string, req Request, started func(json.RawMessage) error, each func(json.RawMessage) error) error {
	if err := req.Check(); err != nil {
		return err
	}
	c, done, err := open(ctx, path)
	if err != nil {
		return err
	}
	defer done()
	resp, br, err := exchange(c, req)
	if err != nil {
		return err
	}
	if !resp.OK {
		return &RemoteError{resp.Error}
	}
	if started != nil {
		if err := started(resp.Result); err != nil {
			return err
		}
	}
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
		var probe struct {
			Error string `json:"stream_error"`
		}
		if bytes.Contains(line, []byte(`"stream_error"`)) && json.Unmarshal(line, &probe) == nil && probe.Error != "" {
			return &RemoteError{probe.Error}
		}
		if err := each(json.RawMessage(line[:len(line)-1])); err != nil {
			return err
		}
	}
}

// Stop asks the master to stop (with force, to kill its workers at once)
// and returns once it has: the master closes the connection when its last
// worker has exited.
func Stop(ctx context.Context, path string, force bool) error {
	c, done, err := open(ctx, path)
	if err != nil {
		return err
	}
	defer done()
	resp, br, err := exchange(c, Request{Cmd: CmdStop, Force: force})
	if err != nil {
		return err
	}
	if !resp.OK {
		return &RemoteError{resp.Error}
	}
	_, err = io.Copy(io.Discard, br)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Alive reports whether a master answers at path.
func Alive(ctx context.Context, path string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := dial(ctx, path)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
