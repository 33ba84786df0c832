package unitfile

import (
	"strings"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/workers"
)

func TestExecWord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"--workers", "--workers"},
		{"web=:8080", "web=:8080"},
		{"/srv/app/server", "/srv/app/server"},
		{"user@host,a+b", "user@host,a+b"},
		{"", `""`},
		{"a b", `"a b"`},
		{`say "hi"`, `"say \"hi\""`},
		{`C:\dir`, `"C:\\dir"`},
		{`\`, `"\\"`},
		{"$HOME", "$$HOME"},
		{"${HOME}", `"$${HOME}"`},
		{"$", "$$"},
		{"$$", "$$$$"},
		{"100%", "100%%"},
		{"%n", "%%n"},
		{"50% $x", `"50%% $$x"`},
		{";", `";"`},
		{`\;`, `"\\;"`},
		{"a;b", `"a;b"`},
		{"it's", `"it's"`},
		{"'quoted'", `"'quoted'"`},
		{"tab\there", `"tab\there"`},
		{"two\nlines", `"two\nlines"`},
		{"bell\x07", `"bell\x07"`},
		{"del\x7f", `"del\x7f"`},
		{"\xff", `"\xff"`},
		{"héllo", `"héllo"`},
		{"#notacomment", `"#notacomment"`},
		{"a*b?[c]", `"a*b?[c]"`},
		{"{out}", `"{out}"`},
		{"~/x", `"~/x"`},
	} {
		if got := execWord(tc.in); got != tc.want {
			t.Errorf("execWord(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestSpan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{45 * time.Second, "45s"},
		{2 * time.Minute, "120s"},
		{1500 * time.Millisecond, "1500ms"},
		{time.Millisecond + 1, "2ms"},
	} {
		if got := span(tc.d); got != tc.want {
			t.Errorf("span(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestDefaultsMatchWorkers(t *testing.T) {
	t.Parallel()
	if DefaultDrainTimeout != workers.DefaultDrainTimeout {
		t.Errorf("DefaultDrainTimeout = %v, workers says %v", DefaultDrainTimeout, workers.DefaultDrainTimeout)
	}
	if DefaultReadyTimeout != workers.DefaultReadyTimeout {
		t.Errorf("DefaultReadyTimeout = %v, workers says %v", DefaultReadyTimeout, workers.DefaultReadyTimeout)
	}
}

func baseOptions() Options {
	return Options{
		Name:    "myapp",
		Exec:    "/usr/local/bin/hotcluster",
		RunArgs: []string{"--listen", "web=:8080", "--", "/srv/app/server", "--flag"},
		Listen:  []Listen{{Name: "web", Network: "tcp", Addr: ":8080"}},
	}
}

// settings returns the values of key in a rendered unit, in order.
func settings(unit, key string) []string {
	var vs []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

func TestService(t *testing.T) {
	t.Parallel()
	o := baseOptions()
	o.DrainTimeout = 10 * time.Second
	o.ReadyTimeout = 1500 * time.Millisecond
	o.WorkingDirectory = "/srv/app 100%"
	o.User, o.Group = "app", "www-data"
	o.Environment = []string{"GREETING=hello world", `QUOTE=say "hi" \o/`, "COST=$5 or 5%", "EMPTY="}
	o.RunArgs = []string{"--listen", "web=:8080", "--", "/srv/my app/server", "--price=$5", "50%"}
	s, err := Service(o)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]string{
		"Description":      {`hotcluster: /srv/my app/server --price=$5 50%%`},
		"After":            {"network.target"},
		"Requires":         nil,
		"Sockets":          nil,
		"NonBlocking":      nil,
		"Type":             {"notify"},
		"NotifyAccess":     {"main"},
		"ExecStart":        {`/usr/local/bin/hotcluster run --listen web=:8080 -- "/srv/my app/server" --price=$$5 50%%`},
		"ExecReload":       {"/bin/kill -HUP $MAINPID"},
		"KillMode":         {"mixed"},
		"KillSignal":       {"SIGTERM"},
		"TimeoutStopSec":   {"25s"},
		"TimeoutStartSec":  {"31500ms"},
		"Restart":          {"on-failure"},
		"RestartSec":       {"1"},
		"WorkingDirectory": {"/srv/app 100%%"},
		"User":             {"app"},
		"Group":            {"www-data"},
		"Environment":      {`"GREETING=hello world"`, `"QUOTE=say \"hi\" \\o/"`, `"COST=$5 or 5%%"`, `"EMPTY="`},
		"WantedBy":         {"multi-user.target"},
		"Also":             nil,
	} {
		if got := settings(s, key); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

func TestServiceWithSockets(t *testing.T) {
	t.Parallel()
	o := baseOptions()
	o.WithSocket = true
	s, err := Service(o)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]string{
		"Requires":    {"myapp.socket"},
		"After":       {"network.target", "myapp.socket"},
		"Sockets":     {"myapp.socket"},
		"NonBlocking": {"yes"},
		"Also":        {"myapp.socket"},
	} {
		if got := settings(s, key); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}

	o.WithSocket = false
	o.SocketUnits = []string{"myapp-web.socket", "myapp-admin.socket"}
	s, err = Service(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := settings(s, "Sockets"); len(got) != 1 || got[0] != "myapp-web.socket myapp-admin.socket" {
		t.Errorf("Sockets = %q", got)
	}
}

func TestDefaultDescription(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "2", "--", "node", "server.js"}, "hotcluster: node server.js"},
		{[]string{"./server"}, "hotcluster: ./server"},
		{[]string{"--", "a\nb", `c\`}, "hotcluster: a b c"},
		{[]string{"--"}, "hotcluster"},
	} {
		if got := defaultDescription(tc.args); got != tc.want {
			t.Errorf("defaultDescription(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestServiceErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"empty name", func(o *Options) { o.Name = "" }, "empty unit name"},
		{"suffix", func(o *Options) { o.Name = "myapp.service" }, "without .service"},
		{"template", func(o *Options) { o.Name = "myapp@1" }, "template"},
		{"space in name", func(o *Options) { o.Name = "my app" }, "systemd-escape"},
		{"slash in name", func(o *Options) { o.Name = "a/b" }, "only ASCII letters"},
		{"long name", func(o *Options) { o.Name = strings.Repeat("a", 248) }, "255"},
		{"empty exec", func(o *Options) { o.Exec = "" }, "empty Exec"},
		{"relative exec", func(o *Options) { o.Exec = "bin/hotcluster" }, "not an absolute path"},
		{"unclean exec", func(o *Options) { o.Exec = "/usr/bin/../bin/hotcluster" }, `want "/usr/bin/hotcluster"`},
		{"quote in exec", func(o *Options) { o.Exec = `/opt/"x"/hotcluster` }, "quotes and backslashes"},
		{"dollar in exec", func(o *Options) { o.Exec = "/opt/$x/hotcluster" }, "substitute"},
		{"newline in exec", func(o *Options) { o.Exec = "/opt/x\n/hotcluster" }, "control characters"},
		{"no args", func(o *Options) { o.RunArgs = nil }, "no run arguments"},
		{"NUL arg", func(o *Options) { o.RunArgs = []string{"--", "a\x00b"} }, "NUL"},
		{"newline description", func(o *Options) { o.Description = "a\nExecStartPre=/bin/evil" }, "control characters"},
		{"backslash description", func(o *Options) { o.Description = `a\` }, "trailing backslash"},
		{"negative drain", func(o *Options) { o.DrainTimeout = -time.Second }, "drain timeout -1s: negative"},
		{"relative dir", func(o *Options) { o.WorkingDirectory = "srv" }, "absolute path"},
		{"unclean dir", func(o *Options) { o.WorkingDirectory = "/srv/" }, "not a clean path"},
		{"spaced dir", func(o *Options) { o.WorkingDirectory = "/srv " }, "strips"},
		{"bad user", func(o *Options) { o.User = "a b" }, `user "a b"`},
		{"bad group", func(o *Options) { o.Group = "-g" }, `group "-g"`},
		{"env without =", func(o *Options) { o.Environment = []string{"FOO"} }, "want K=V"},
		{"env bad name", func(o *Options) { o.Environment = []string{"A-B=1"} }, "variable name"},
		{"env digit name", func(o *Options) { o.Environment = []string{"1A=1"} }, "start with a digit"},
		{"env control", func(o *Options) { o.Environment = []string{"A=x\ny"} }, "control characters"},
		{"bad socket unit", func(o *Options) { o.SocketUnits = []string{"myapp.service"} }, "ending in .socket"},
	} {
		o := baseOptions()
		tc.modify(&o)
		_, err := Service(o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestSocketNoDelay(t *testing.T) {
	t.Parallel()
	o := baseOptions()
	o.Listen = []Listen{{Name: "web", Network: "tcp", Addr: "127.0.0.1:8080"}}
	for _, nagle := range []bool{false, true} {
		o.Nagle = nagle
		s, err := Socket(o)
		if err != nil {
			t.Fatal(err)
		}
		want := "true"
		if nagle {
			want = "false"
		}
		if got := settings(s, "NoDelay"); len(got) != 1 || got[0] != want {
			t.Errorf("Nagle %v: NoDelay = %q, want %s", nagle, got, want)
		}
	}
}

func TestSocketListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		network, addr string
		want          map[string][]string
	}{
		{"tcp", ":8080", map[string][]string{"ListenStream": {"8080"}, "BindIPv6Only": {"both"}, "FreeBind": nil, "ReusePort": {"yes"}, "NoDelay": {"true"}}},
		{"tcp4", ":8080", map[string][]string{"ListenStream": {"0.0.0.0:8080"}, "BindIPv6Only": nil}},
		{"tcp6", ":8080", map[string][]string{"ListenStream": {"[::]:8080"}, "BindIPv6Only": {"ipv6-only"}}},
		{"tcp", "0.0.0.0:8080", map[string][]string{"ListenStream": {"0.0.0.0:8080"}, "BindIPv6Only": nil, "FreeBind": nil}},
		{"tcp", "[::]:8080", map[string][]string{"ListenStream": {"[::]:8080"}, "BindIPv6Only": {"both"}}},
		{"tcp6", "[::]:8080", map[string][]string{"ListenStream": {"[::]:8080"}, "BindIPv6Only": {"ipv6-only"}}},
		{"tcp", "127.0.0.1:8080", map[string][]string{"ListenStream": {"127.0.0.1:8080"}, "FreeBind": nil}},
		{"tcp", "[::1]:8080", map[string][]string{"ListenStream": {"[::1]:8080"}, "BindIPv6Only": nil, "FreeBind": nil}},
		{"tcp", "[::ffff:10.0.0.1]:80", map[string][]string{"ListenStream": {"10.0.0.1:80"}, "FreeBind": {"yes"}}},
		{"tcp", "192.0.2.7:443", map[string][]string{"ListenStream": {"192.0.2.7:443"}, "FreeBind": {"yes"}}},
		{"tcp6", "[fe80::1%eth0]:8080", map[string][]string{"ListenStream": {"[fe80::1]:8080%%eth0"}, "FreeBind": {"yes"}}},
		{"udp", ":5353", map[string][]string{"ListenDatagram": {"5353"}, "ListenStream": nil, "BindIPv6Only": {"both"}, "NoDelay": nil}},
		{"udp4", "127.0.0.1:53", map[string][]string{"ListenDatagram": {"127.0.0.1:53"}}},
		{"unix", "/run/app 100%.sock", map[string][]string{"ListenStream": {"/run/app 100%%.sock"}, "ReusePort": nil, "BindIPv6Only": nil}},
		{"unix", "@app", map[string][]string{"ListenStream": {"@app"}, "ReusePort": nil, "NoDelay": nil}},
	} {
		o := baseOptions()
		o.Listen = []Listen{{Name: "web", Network: tc.network, Addr: tc.addr}}
		s, err := Socket(o)
		if err != nil {
			t.Errorf("%s %s: %v", tc.network, tc.addr, err)
			continue
		}
		for key, want := range tc.want {
			if got := settings(s, key); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s %s: %s = %q, want %q", tc.network, tc.addr, key, got, want)
			}
		}
		if got := settings(s, "FileDescriptorName"); len(got) != 1 || got[0] != "web" {
			t.Errorf("%s %s: FileDescriptorName = %q", tc.network, tc.addr, got)
		}
		if got := settings(s, "Service"); len(got) != 1 || got[0] != "myapp.service" {
			t.Errorf("%s %s: Service = %q", tc.network, tc.addr, got)
		}
	}
}

func TestSocketSeveralListeners(t *testing.T) {
	t.Parallel()
	o := baseOptions()
	o.Name = "myapp-web"
	o.ServiceUnit = "myapp.service"
	o.User = "app"
	o.Listen = []Listen{
		{Name: "web", Network: "tcp", Addr: ":8080"},
		{Name: "web", Network: "udp", Addr: ":8080"},
		{Name: "web", Network: "unix", Addr: "/run/web.sock"},
	}
	s, err := Socket(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := settings(s, "ListenStream"); strings.Join(got, " ") != "8080 /run/web.sock" {
		t.Errorf("ListenStream = %q", got)
	}
	if got := settings(s, "Service"); len(got) != 1 || got[0] != "myapp.service" {
		t.Errorf("Service = %q", got)
	}
	if !strings.Contains(s, "with User=app, hotcluster shares them") {
		t.Errorf("no note on User= and SO_REUSEPORT groups in\n%s", s)
	}
}

func TestSocketErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"no listeners", func(o *Options) { o.Listen = nil }, "no listeners"},
		{"bad service unit", func(o *Options) { o.ServiceUnit = "myapp" }, "ending in .service"},
		{"two names", func(o *Options) {
			o.Listen = append(o.Listen, Listen{Name: "admin", Network: "tcp", Addr: ":9090"})
		}, `listeners "web" and "admin" have different names, but systemd gives one FileDescriptorName= to all sockets of a unit; render one socket unit per name (e.g. myapp-web.socket and myapp-admin.socket, each with ServiceUnit "myapp.service")`},
		{"empty listener name", func(o *Options) { o.Listen[0].Name = "" }, "empty name"},
		{"bad listener name", func(o *Options) { o.Listen[0].Name = "a:b" }, "may hold only"},
		{"dual and v6-only", func(o *Options) {
			o.Listen = append(o.Listen, Listen{Name: "web", Network: "tcp6", Addr: ":9090"})
		}, "BindIPv6Only"},
		{"twice", func(o *Options) { o.Listen = append(o.Listen, o.Listen[0]) }, "given twice"},
		{"host name", func(o *Options) { o.Listen[0].Addr = "localhost:8080" }, "not a host name"},
		{"port 0", func(o *Options) { o.Listen[0].Addr = "127.0.0.1:0" }, "fixed port"},
		{"no port", func(o *Options) { o.Listen[0].Addr = "127.0.0.1" }, "[HOST]:PORT"},
		{"v6 on tcp4", func(o *Options) { o.Listen[0] = Listen{Name: "web", Network: "tcp4", Addr: "[::1]:80"} }, "not an IPv4 address"},
		{"v4 on tcp6", func(o *Options) { o.Listen[0] = Listen{Name: "web", Network: "tcp6", Addr: "127.0.0.1:80"} }, "not an IPv6 address"},
		{"network", func(o *Options) { o.Listen[0].Network = "sctp" }, "unknown network"},
		{"relative unix", func(o *Options) { o.Listen[0] = Listen{Name: "web", Network: "unix", Addr: "app.sock"} }, "absolute"},
		{"unclean unix", func(o *Options) { o.Listen[0] = Listen{Name: "web", Network: "unix", Addr: "/run//app.sock"} }, "clean"},
		{"long unix", func(o *Options) {
			o.Listen[0] = Listen{Name: "web", Network: "unix", Addr: "/" + strings.Repeat("a", 107)}
		}, "107"},
		{"newline unix", func(o *Options) { o.Listen[0] = Listen{Name: "web", Network: "unix", Addr: "/run/a\nb"} }, "control"},
		{"bad zone", func(o *Options) { o.Listen[0] = Listen{Name: "web", Network: "tcp", Addr: "[fe80::1%a/b]:80"} }, "interface"},
	} {
		o := baseOptions()
		tc.modify(&o)
		_, err := Socket(o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TimeoutStopSec= covers --shutdown-delay, then --drain-timeout, then the
// margin; a negative delay is refused.
func TestServiceStopTimeoutCoversTheShutdownDelay(t *testing.T) {
	t.Parallel()
	o := baseOptions()
	o.DrainTimeout = 8 * time.Second
	o.ShutdownDelay = 5 * time.Second
	s, err := Service(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := settings(s, "TimeoutStopSec"); len(got) != 1 || got[0] != "28s" {
		t.Errorf("TimeoutStopSec = %q, want 28s (5s + 8s + 15s)", got)
	}
	if !strings.Contains(s, "# Longer than --shutdown-delay (5s, serving on after SIGTERM) plus\n# --drain-timeout (8s)") {
		t.Errorf("the comment does not say why:\n%s", s)
	}
	if got := settings(s, "Delegate"); len(got) != 1 || got[0] != "yes" {
		t.Errorf("Delegate = %q, want yes", got)
	}
	o.ShutdownDelay = -time.Second
	if _, err := Service(o); err == nil {
		t.Error("a negative shutdown delay: no error")
	}
}
