// Package control is the master's control socket: a unix stream socket,
// private to the master's user (directory 0700, socket 0600, and the peer's
// credentials checked on every connection), that takes one JSON request per
// connection and answers with one JSON response, or a stream of events.
//
// The protocol is line-based so that it can be spoken with socat or nc:
//
//	$ echo '{"cmd":"status"}' | socat - UNIX-CONNECT:$XDG_RUNTIME_DIR/hotcluster/app.sock
//	{"ok":true,"result":{...}}
package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/internal/protocol"
)

// MaxRequest bounds a request line: room for a message of the workers'
// channel limit (1 MiB) and its envelope.
const MaxRequest = 1<<20 + 4<<10

// Commands a master answers.
const (
	CmdStatus  = "status"
	CmdReload  = "reload"
	CmdUpgrade = "upgrade"
	CmdScale   = "scale"
	CmdStop    = "stop"
	CmdEvents  = "events"
	CmdSend    = "send"
	CmdLogs    = "logs"
)

var commands = []string{CmdStatus, CmdReload, CmdUpgrade, CmdScale, CmdStop, CmdEvents, CmdSend, CmdLogs}

// Request is one command to the master.
type Request struct {
	Cmd string `json:"cmd"`
	// Scale: "N" sets the size, "+N" and "-N" change it.
	Scale string `json:"scale,omitempty"`
	// Send: the worker slot, or all of them when nil. Logs: that slot's
	// lines only.
	Slot *int `json:"slot,omitempty"`
	// Send: the JSON value to deliver.
	Message json.RawMessage `json:"message,omitempty"`
	// Stop: kill the workers at once instead of draining them.
	Force bool `json:"force,omitempty"`
	// Logs: how many of the last lines (negative: all the master keeps),
	// then with Follow every new one, of Generation only (when not 0), from
	// Since on (when set).
	Lines      int        `json:"lines,omitempty"`
	Follow     bool       `json:"follow,omitempty"`
	Generation uint64     `json:"generation,omitempty"`
	Since      *time.Time `json:"since,omitempty"`
}

// Response answers a request. For events, an OK response is followed by
// one Event object per line.
type Response struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// ErrRequest marks a request the master could not read.
var ErrRequest = errors.New("control: bad request")

// ReadRequest reads and checks one request line of at most MaxRequest
// bytes.
func ReadRequest(r *bufio.Reader) (Request, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxRequest {
			return Request{}, fmt.Errorf("%w: over %d bytes", ErrRequest, MaxRequest)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			break // the last line may lack its newline
		}
		if err != nil {
			if err == io.EOF {
				return Request{}, fmt.Errorf("%w: %w", ErrRequest, errNoRequest)
			}
			return Request{}, err
		}
		break
	}
	return DecodeRequest(line)
}

// errNoRequest is a connection closed before it sent anything: what
// Alive does to see whether a master answers.
var errNoRequest = errors.New("no request before the connection closed")

// DecodeRequest parses and checks one request line.
func DecodeRequest(line []byte) (Request, error) {
	var req Request
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	if d.More() {
		return Request{}, fmt.Errorf("%w: more than one JSON value on the line", ErrRequest)
	}
	if err := req.Check(); err != nil {
		return Request{}, err
	}
	return req, nil
}

// Check validates the fields of a request for its command.
func (r Request) Check() error {
	known := false
	for _, c := range commands {
		known = known || c == r.Cmd
	}
	if !known {
		return fmt.Errorf("%w: unknown command %q; want one of %s", ErrRequest, r.Cmd, strings.Join(commands, ", "))
	}
	if r.Cmd == CmdScale {
		if _, _, err := ParseScale(r.Scale); err != nil {
			return fmt.Errorf("%w: %w", ErrRequest, err)
		}
	} else if r.Scale != "" {
		return fmt.Errorf("%w: scale is only for the scale command", ErrRequest)
	}
	if r.Cmd == CmdSend {
		if len(r.Message) == 0 {
			return fmt.Errorf("%w: send without a message", ErrRequest)
		}
	} else if len(r.Message) != 0 {
		return fmt.Errorf("%w: message is only for the send command", ErrRequest)
	}
	if r.Slot != nil && r.Cmd != CmdSend && r.Cmd != CmdLogs {
		return fmt.Errorf("%w: slot is only for the send and logs commands", ErrRequest)
	}
	if r.Slot != nil && *r.Slot < 0 {
		return fmt.Errorf("%w: slot %d: want 0 or more", ErrRequest, *r.Slot)
	}
	if r.Cmd != CmdLogs && (r.Lines != 0 || r.Follow || r.Generation != 0 || r.Since != nil) {
		return fmt.Errorf("%w: lines, follow, generation and since are only for the logs command", ErrRequest)
	}
	if r.Force && r.Cmd != CmdStop {
		return fmt.Errorf("%w: force is only for the stop command", ErrRequest)
	}
	return nil
}

// MaxWorkers bounds a group's size (see protocol.MaxWorkers).
const MaxWorkers = protocol.MaxWorkers

// ParseScale parses "N", "+N" or "-N": relative reports a change.
func ParseScale(s string) (n int, relative bool, err error) {
	t := s
	sign := 1
	switch {
	case strings.HasPrefix(t, "+"):
		relative, t = true, t[1:]
	case strings.HasPrefix(t, "-"):
		relative, sign, t = true, -1, t[1:]
	}
	if t == "" || len(t) > 6 || strings.Trim(t, "0123456789") != "" {
		return 0, false, fmt.Errorf("scale %q: want a worker count such as 4, +1 or -2", s)
	}
	for _, c := range t {
		n = n*10 + int(c-'0')
	}
	if !relative && n < 1 {
		return 0, false, fmt.Errorf("scale %q: want 1 worker or more", s)
	}
	if n > MaxWorkers {
		return 0, false, fmt.Errorf("scale %q: more than %d workers", s, MaxWorkers)
	}
	return sign * n, relative, nil
}
