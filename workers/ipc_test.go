package workers

import (
	"bytes"
	"strings"
	"testing"
)

func TestReadIPC(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		`"ready"`, `{"cmd":"NODE_HANDLE_ACK"}`, `{"a":1}`, `not json`, `also not`, `{"b":2}`,
		strings.Repeat("x", 2<<20), `[1,2]`, ``, `"ready"`, `{"partial":`,
	}, "\n")
	var got []string
	var bad []string
	readIPC(strings.NewReader(in), func(m ipcMessage) {
		if m.ready {
			got = append(got, "READY")
		} else {
			got = append(got, string(m.value))
		}
	}, func(err error) { bad = append(bad, err.Error()) })
	want := []string{"READY", `{"a":1}`, `{"b":2}`, `[1,2]`, "READY"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("messages %q, want %q", got, want)
	}
	// One report per burst of bad input: "not json"+"also not", the long
	// line, and the truncated last line.
	if len(bad) != 3 || !strings.Contains(bad[1], "over 1048576 bytes") {
		t.Errorf("reports %q", bad)
	}
}

func FuzzDecodeIPCLine(f *testing.F) {
	for _, s := range []string{`"ready"`, `{"cmd":"NODE_X"}`, `{"a":[1,{"b":null}]}`, `1e999`, "\x00", `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		msg, ok, err := decodeIPCLine(line)
		if err != nil && ok {
			t.Fatalf("decodeIPCLine(%q): both a message and %v", line, err)
		}
		if ok && !msg.ready && len(bytes.TrimSpace(msg.value)) == 0 {
			t.Fatalf("decodeIPCLine(%q): empty message", line)
		}
		// readIPC never blocks or panics on the same bytes.
		readIPC(bytes.NewReader(line), func(ipcMessage) {}, func(error) {})
	})
}

func FuzzNotifyDatagram(f *testing.F) {
	for _, s := range []string{"READY=1", "STATUS=warming up\nREADY=1\n", "\n\n", "MAINPID=1\nREADY=1\x00", "STATUS=\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		for _, line := range notifyLines(b) {
			if line == "" || strings.Contains(line, "\n") {
				t.Fatalf("notifyLines(%q): line %q", b, line)
			}
			n += len(line)
			kind, value := parseNotify(line)
			if kind == notifyReady && line != "READY=1" || kind == notifyStatus && "STATUS="+value != line {
				t.Fatalf("parseNotify(%q) = %v, %q", line, kind, value)
			}
		}
		if n > len(b) {
			t.Fatalf("notifyLines(%q): %d bytes out of %d", b, n, len(b))
		}
	})
}
