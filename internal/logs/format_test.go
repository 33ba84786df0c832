package logs

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)

func worker(stream, text string) Record {
	return WorkerRecord(at, 3, 1, 4242, stream, []byte(text), false)
}

func TestText(t *testing.T) {
	t.Parallel()
	cut := worker("stdout", "head")
	cut.Cut = true
	master := Record{Time: at, Priority: PrioInfo, Master: true, Text: []byte("gen 3 ready")}
	for _, tc := range []struct {
		style Style
		r     Record
		want  string
	}{
		{Style{}, worker("stdout", "hello"), "[g3 w1] hello\n"},
		{Style{}, worker("stderr", "oops"), "[g3 w1 err] oops\n"},
		{Style{}, worker("stdout", "<4>kept as printed"), "[g3 w1] <4>kept as printed\n"},
		{Style{}, cut, "[g3 w1] head" + CutMarker + "\n"},
		{Style{}, master, "hotcluster: gen 3 ready\n"},
		{Style{Time: true}, master, "2026-11-25T10:00:00.123Z hotcluster: gen 3 ready\n"},
		{Style{Color: true}, worker("stdout", "x"), "\x1b[35m[g3 w1]\x1b[0m x\n"},
		{Style{Color: true}, worker("stderr", "x"), "\x1b[35m[g3 w1 \x1b[31merr\x1b[35m]\x1b[0m x\n"},
	} {
		if got := string(tc.style.Append(nil, &tc.r)); got != tc.want {
			t.Errorf("%+v of %q: %q, want %q", tc.style, tc.r.Text, got, tc.want)
		}
	}
}

// Every JSON line is one valid object whatever the line holds; a worker's
// JSON object stays one; the level comes from the stream or a "<N>".
func TestJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r    Record
		want string
	}{
		{worker("stdout", "hello"), `{"time":"2026-11-25T10:00:00.123456789Z","level":"info","msg":"hello","gen":3,"slot":1,"pid":4242,"stream":"stdout"}`},
		{worker("stderr", `{"a":[1,2],"b":"c"}`), `{"time":"2026-11-25T10:00:00.123456789Z","level":"error","json":{"a":[1,2],"b":"c"},"gen":3,"slot":1,"pid":4242,"stream":"stderr"}`},
		{worker("stdout", "<3>failed"), `{"time":"2026-11-25T10:00:00.123456789Z","level":"error","msg":"failed","gen":3,"slot":1,"pid":4242,"stream":"stdout"}`},
		{worker("stdout", `{"not":"closed"`), `{"time":"2026-11-25T10:00:00.123456789Z","level":"info","msg":"{\"not\":\"closed\"","gen":3,"slot":1,"pid":4242,"stream":"stdout"}`},
		{Record{Time: at, Priority: PrioWarn, Master: true, Text: []byte("\x1b[31mred\x1b[0m"),
			Attrs: []slog.Attr{slog.Uint64("gen", 3), slog.Int("slot", 1), slog.Duration("took", time.Second), slog.String("q", `"`)}},
			`{"time":"2026-11-25T10:00:00.123456789Z","level":"warn","msg":"red","gen":3,"slot":1,"took":1000000000,"q":"\""}`},
	} {
		got := string(AppendJSON(nil, &tc.r))
		if got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.r.Text, got, tc.want)
		}
	}
	for _, s := range []string{"tab\tnl\n\x00\x1b", "bad \xff utf-8", "\u2028sep", `back\slash "q"`, "é 日本"} {
		r := worker("stdout", s)
		b := AppendJSON(nil, &r)
		var v struct{ Msg string }
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%q: %s is not JSON: %v", s, b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); v.Msg != want {
			t.Errorf("%q came back as %q", s, v.Msg)
		}
	}
}

func TestPriorities(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		stream, text string
		prio, skip   int
	}{
		{"stdout", "x", PrioInfo, 0}, {"stderr", "x", PrioError, 0}, {"stderr", "<6>fine", 6, 3},
		{"stdout", "<0>", 0, 3}, {"stdout", "<8>no", PrioInfo, 0}, {"stdout", "<7", PrioInfo, 0},
	} {
		r := WorkerRecord(at, 1, 0, 1, tc.stream, []byte(tc.text), false)
		if r.Priority != tc.prio || r.Skip != tc.skip {
			t.Errorf("%s %q: priority %d, skip %d; want %d, %d", tc.stream, tc.text, r.Priority, r.Skip, tc.prio, tc.skip)
		}
	}
	for prio, name := range map[int]string{0: "error", 3: "error", 4: "warn", 5: "info", 6: "info", 7: "debug"} {
		if got := LevelName(prio); got != name {
			t.Errorf("LevelName(%d) = %s, want %s", prio, got, name)
		}
		if p := PriorityOfLevel(name); LevelName(p) != name {
			t.Errorf("PriorityOfLevel(%s) = %d", name, p)
		}
	}
}

func ExampleAppendJSON() {
	r := WorkerRecord(at, 3, 1, 4242, "stdout", []byte(`{"event":"paid","amount":12}`), false)
	fmt.Println(string(AppendJSON(nil, &r)))
	// Output:
	// {"time":"2026-11-25T10:00:00.123456789Z","level":"info","json":{"event":"paid","amount":12},"gen":3,"slot":1,"pid":4242,"stream":"stdout"}
}
