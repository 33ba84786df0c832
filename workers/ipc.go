package workers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/hotcluster/hotcluster/internal/protocol"
)

// IPCMode says whether workers get a message channel.
type IPCMode int

const (
	// IPCAuto gives the channel, announced to Node.js, when the command is
	// node; other programs get none.
	IPCAuto IPCMode = iota
	// IPCOff gives no channel.
	IPCOff
	// IPCOn gives every worker the channel in HOTCLUSTER_IPC_FD.
	IPCOn
	// IPCNode also announces it as NODE_CHANNEL_FD (JSON serialisation).
	IPCNode
)

// ParseIPCMode parses "auto", "off", "on" or "node".
func ParseIPCMode(s string) (IPCMode, error) {
	switch s {
	case "auto", "":
		return IPCAuto, nil
	case "off":
		return IPCOff, nil
	case "on":
		return IPCOn, nil
	case "node":
		return IPCNode, nil
	}
	return 0, fmt.Errorf("ipc mode %q: want auto, off, on or node", s)
}

// ipcFor resolves IPCAuto for a command.
func ipcFor(m IPCMode, cmd Command) IPCMode {
	if m != IPCAuto {
		return m
	}
	if base := filepath.Base(cmd.Path); base == "node" || base == "nodejs" {
		return IPCNode
	}
	return IPCOff
}

// ipcMessage is what the decoder makes of one line.
type ipcMessage struct {
	ready bool
	// broadcast: the worker asks for value to reach every worker of its
	// generation (itself included).
	broadcast bool
	value     json.RawMessage
}

// ipcBroadcast is the cmd of a worker's request for a broadcast, after
// Node's convention of a namespaced "cmd" for internal messages:
// {"cmd":"hotcluster:broadcast","data":VALUE}.
const ipcBroadcast = "hotcluster:broadcast"

// errIPCLine is returned for a line that is not one JSON value.
var errIPCLine = errors.New("workers: malformed message")

// decodeIPCLine decodes one line of a worker's channel. Node's internal
// messages (objects whose "cmd" starts with NODE_) are skipped: ok false.
func decodeIPCLine(line []byte) (msg ipcMessage, ok bool, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return msg, false, nil
	}
	if !json.Valid(line) {
		return msg, false, errIPCLine
	}
	var s string
	if json.Unmarshal(line, &s) == nil {
		return ipcMessage{ready: s == protocol.IPCReady, value: line}, true, nil
	}
	var obj struct {
		Cmd  string          `json:"cmd"`
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(line, &obj) == nil {
		switch {
		case strings.HasPrefix(obj.Cmd, "NODE_"):
			return msg, false, nil
		case obj.Cmd == ipcBroadcast:
			if len(obj.Data) == 0 {
				return msg, false, fmt.Errorf("%w: %s without \"data\"", errIPCLine, ipcBroadcast)
			}
			return ipcMessage{broadcast: true, value: obj.Data}, true, nil
		}
	}
	return ipcMessage{value: line}, true, nil
}

// readIPC reads a worker's channel until EOF. It never stops reading on
// bad input, so a worker cannot block itself or the master: overlong and
// malformed lines are dropped, reported once per burst through bad.
func readIPC(r io.Reader, handle func(ipcMessage), bad func(error)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	skipping, reported := false, false
	for {
		chunk, err := br.ReadSlice('\n')
		if !skipping {
			line = append(line, chunk...)
		}
		if len(line) > protocol.IPCMaxLine {
			if !reported {
				bad(fmt.Errorf("message over %d bytes dropped", protocol.IPCMaxLine))
				reported = true
			}
			line, skipping = line[:0], true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if !skipping && len(line) > 0 {
			msg, ok, derr := decodeIPCLine(line)
			switch {
			case derr != nil && !reported:
				bad(fmt.Errorf("%w: %.80q", derr, line))
				reported = true
			case derr == nil:
				reported = false
				if ok {
					handle(msg)
				}
			}
		}
		line, skipping = line[:0], false
		if err != nil {
			return
		}
	}
}
