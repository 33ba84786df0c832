package unitfile

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults of `hotcluster run`, used when the matching [Options] field is
// zero. The tests check that they match package workers.
const (
	DefaultDrainTimeout = 30 * time.Second
	DefaultReadyTimeout = time.Minute
)

// Margins added to hotcluster's own timeouts to give systemd's.
const (
	// StopMargin is how much longer than the drain timeout systemd waits
	// for hotcluster to exit (TimeoutStopSec=): hotcluster SIGKILLs a worker
	// that outlives the drain timeout and then needs a moment to exit.
	StopMargin = 15 * time.Second
	// StartMargin is how much longer than the ready timeout systemd waits
	// for READY=1 (TimeoutStartSec=), at start and, in systemd 252, from
	// RELOADING=1 to READY=1 during a reload.
	StartMargin = 30 * time.Second
)

// Options describe the units of one `hotcluster run` command line. A zero
// field means "use the default"; Name, Exec and RunArgs are required.
type Options struct {
	// Name is the units' base name: "myapp" gives myapp.service and
	// myapp.socket. ASCII letters, digits and ":-_.\" only (systemd-escape
	// turns any string into one); no "@", since templates are not rendered.
	Name string
	// Description is the service's; it defaults to "hotcluster: " and the
	// worker command (the arguments after "--" in RunArgs). The socket
	// unit's is "Listening sockets of <service>".
	Description string
	// Exec is the absolute, clean path of the hotcluster binary, resolved
	// by the caller (os.Executable). systemd refuses quotes and backslashes
	// in it; '$' is refused too, as systemd would substitute a variable in
	// the argv[0] it passes.
	Exec string
	// RunArgs are the arguments after "hotcluster run", e.g. ["--listen",
	// "web=:8080", "--workers", "4", "--", "/srv/app/server", "--flag"]. They
	// reach hotcluster unchanged, whatever they contain (but NUL).
	RunArgs []string
	// WorkingDirectory is hotcluster's working directory (and so the
	// workers' unless --dir is given): an absolute path, or "~" for the home
	// of User. Empty leaves systemd's default, "/".
	WorkingDirectory string
	// User and Group run hotcluster and its workers as that account
	// (User=, Group=). Empty runs them as root.
	User, Group string
	// DrainTimeout is the --drain-timeout in effect (DefaultDrainTimeout if
	// zero), and ShutdownDelay the --shutdown-delay (none if zero).
	// TimeoutStopSec= is ShutdownDelay + DrainTimeout + StopMargin.
	DrainTimeout  time.Duration
	ShutdownDelay time.Duration
	// ReadyTimeout is the --ready-timeout in effect (DefaultReadyTimeout if
	// zero). TimeoutStartSec= is ReadyTimeout + StartMargin.
	ReadyTimeout time.Duration
	// Environment are "K=V" assignments for hotcluster, which its workers
	// inherit. Values are written as they are: no variable expansion.
	Environment []string

	// WithSocket makes Service depend on the socket unit Name.socket and
	// take its sockets (socket activation).
	WithSocket bool
	// SocketUnits, for Service, names the socket units when there are
	// several (one per listener name, e.g. "myapp-web.socket"); it implies
	// WithSocket. Empty means Name.socket when WithSocket is set.
	SocketUnits []string
	// ServiceUnit, for Socket, is the service the sockets belong to.
	// Empty means Name.service.
	ServiceUnit string
	// Listen, for Socket, are the listeners: one ListenStream= or
	// ListenDatagram= each. All must have the same Name (see Socket).
	Listen []Listen
	// Nagle, for Socket, writes NoDelay=false, as `hotcluster run
	// --nodelay=false` asks: by default a socket unit with a TCP listener
	// has NoDelay=true, as hotcluster's own TCP sockets are TCP_NODELAY.
	Nagle bool
}

// Listen is one listener of a socket unit, as `--listen NAME=ADDR` gives it.
type Listen struct {
	// Name is the --listen NAME, which becomes FileDescriptorName= and so
	// what LISTEN_FDNAMES says: letters, digits, '-', '_' and '.'.
	Name string
	// Network is tcp, tcp4, tcp6, udp, udp4, udp6 or unix.
	Network string
	// Addr is "host:port" with host an IP address or empty (all addresses),
	// or for unix an absolute socket path or "@abstract".
	Addr string
}

// stopCommand sends SIGTERM to the master and waits for it to exit;
// TimeoutStopSec= bounds the wait.
const stopCommand = `/bin/sh -c "kill -TERM $MAINPID && while kill -0 $MAINPID 2>/dev/null; do sleep 0.1; done"`

// Service renders the .service unit that runs `<Exec> run <RunArgs…>`. The
// error names the first invalid field.
func Service(o Options) (string, error) {
	if err := checkBase(o.Name); err != nil {
		return "", err
	}
	if err := checkExec(o.Exec); err != nil {
		return "", err
	}
	if len(o.RunArgs) == 0 {
		return "", fmt.Errorf("unitfile: no run arguments: want at least the worker command, e.g. --listen :8080 -- /srv/app/server")
	}
	for _, a := range o.RunArgs {
		if strings.IndexByte(a, 0) >= 0 {
			return "", fmt.Errorf("unitfile: run argument %q: an argument cannot contain NUL", a)
		}
	}
	desc := o.Description
	if desc == "" {
		desc = defaultDescription(o.RunArgs)
	} else if err := plainValue("description", desc); err != nil {
		return "", err
	}
	drain, err := timeout("drain timeout", o.DrainTimeout, DefaultDrainTimeout)
	if err != nil {
		return "", err
	}
	if o.ShutdownDelay < 0 {
		return "", fmt.Errorf("unitfile: shutdown delay %s: want 0 or more", o.ShutdownDelay)
	}
	ready, err := timeout("ready timeout", o.ReadyTimeout, DefaultReadyTimeout)
	if err != nil {
		return "", err
	}
	if err := checkDir(o.WorkingDirectory); err != nil {
		return "", err
	}
	if err := checkAccount("user", o.User); err != nil {
		return "", err
	}
	if err := checkAccount("group", o.Group); err != nil {
		return "", err
	}
	for _, e := range o.Environment {
		if err := checkEnv(e); err != nil {
			return "", err
		}
	}
	sockets := o.SocketUnits
	if len(sockets) == 0 && o.WithSocket {
		sockets = []string{o.Name + ".socket"}
	}
	for _, s := range sockets {
		if err := checkUnit("socket unit", s, ".socket"); err != nil {
			return "", err
		}
	}

	var u unit
	u.comment(o.Name+".service: hotcluster's worker group as a systemd service, generated by",
		"hotcluster. After editing it, run: systemctl daemon-reload")

	u.section("Unit")
	u.set("Description", escapeSpecifiers(desc))
	u.set("After", "network.target")
	if len(sockets) > 0 {
		u.comment("The listening sockets come from the socket units (socket activation);",
			"hotcluster uses them instead of binding its own.")
		u.set("Requires", strings.Join(sockets, " "))
		u.set("After", strings.Join(sockets, " "))
	}

	u.section("Service")
	u.comment("hotcluster sends READY=1 once its first generation serves, RELOADING=1 and",
		"READY=1 around each reload, STATUS= lines, and STOPPING=1 while it drains.")
	u.set("Type", "notify")
	u.comment("Only the main process may notify. Workers never get systemd's notify socket",
		"(hotcluster gives each its own), and on a binary upgrade the old master names",
		"the new one with MAINPID= before it exits, which \"main\" accepts; the new",
		"master's messages count from then on (its READY=1 from before the handover is",
		"ignored, harmlessly: the unit is already active). \"all\" would also accept the",
		"retiring master after the handover, whose STOPPING=1 would stop the service.")
	u.set("NotifyAccess", "main")
	if len(sockets) > 0 {
		u.comment("Workers get their listeners non-blocking, and the flag is shared by every",
			"process that holds a socket: systemd sets it here, before anyone uses them.")
		u.set("Sockets", strings.Join(sockets, " "))
		u.set("NonBlocking", "yes")
	}
	u.comment("hotcluster stays the main process while the service runs: it holds the",
		"sockets and starts, reloads and drains the workers. In this line \"$$\" is a",
		"literal '$' and \"%%\" a literal '%'.")
	words := []string{execWord(o.Exec), "run"}
	for _, a := range o.RunArgs {
		words = append(words, execWord(a))
	}
	u.set("ExecStart", strings.Join(words, " "))
	u.comment("SIGHUP starts a new generation; the old one drains once the new one is",
		"ready. $MAINPID follows hotcluster across binary upgrades.")
	u.set("ExecReload", "/bin/kill -HUP $MAINPID")
	u.comment("After a binary upgrade the main process is not systemd's child, and systemd",
		"cannot see it exit: without this line it would SIGKILL the group at once. So",
		"stop asks hotcluster to drain and waits until it has exited.")
	u.set("ExecStop", stopCommand)
	u.comment("On stop, SIGTERM goes to hotcluster only: it drains the workers (--stop-signal",
		"to each worker's process group, SIGKILL after --drain-timeout) and exits 0;",
		"then systemd SIGKILLs whatever is left. \"control-group\" would signal every",
		"worker at once, bypassing --stop-signal and the drain; \"process\" would leave",
		"strays running after the service stopped.")
	u.set("KillMode", "mixed")
	u.set("KillSignal", "SIGTERM")
	u.comment("hotcluster puts each worker in a cgroup of its own below the service's, so",
		"that whatever a worker starts (a double fork, setsid) is killed with it;",
		"delegation makes that subtree hotcluster's to manage.")
	u.set("Delegate", "yes")
	if o.ShutdownDelay > 0 {
		u.comment(fmt.Sprintf("Longer than --shutdown-delay (%s, serving on after SIGTERM) plus", span(o.ShutdownDelay)),
			fmt.Sprintf("--drain-timeout (%s), so that systemd never SIGKILLs a draining group.", span(drain)))
	} else {
		u.comment(fmt.Sprintf("Longer than --drain-timeout (%s), so that systemd never SIGKILLs a", span(drain)),
			"draining group.")
	}
	u.set("TimeoutStopSec", span(o.ShutdownDelay+drain+StopMargin))
	u.comment(fmt.Sprintf("Longer than --ready-timeout (%s): the time the first generation has to", span(ready)),
		"become ready. systemd 252 also allows a reload this long, RELOADING=1 to READY=1.")
	u.set("TimeoutStartSec", span(ready+StartMargin))
	u.comment("hotcluster restarts crashed workers itself; it exits non-zero only when it",
		"cannot serve at all (port in use, first generation failing).")
	u.set("Restart", "on-failure")
	u.set("RestartSec", "1")
	if o.WorkingDirectory != "" {
		u.set("WorkingDirectory", escapeSpecifiers(o.WorkingDirectory))
	}
	if o.User != "" {
		u.set("User", o.User)
	}
	if o.Group != "" {
		u.set("Group", o.Group)
	}
	if len(o.Environment) > 0 {
		u.comment("The workers inherit hotcluster's environment.")
	}
	for _, e := range o.Environment {
		u.set("Environment", quote(escapeSpecifiers(e)))
	}

	u.section("Install")
	u.set("WantedBy", "multi-user.target")
	if len(sockets) > 0 {
		u.set("Also", strings.Join(sockets, " "))
	}
	return u.String(), nil
}

// Socket renders the .socket unit with o.Listen for the service
// o.ServiceUnit (default Name.service).
//
// systemd gives the one FileDescriptorName= of a socket unit to all its
// sockets (systemd.socket(5)), and hotcluster tells its listeners apart by
// that name, so listeners with different names are an error that asks for
// one socket unit per name. Likewise a unit holds one BindIPv6Only=: a
// dual-stack listener (tcp ":8080") and an IPv6-only one (tcp6) need two.
func Socket(o Options) (string, error) {
	if err := checkBase(o.Name); err != nil {
		return "", err
	}
	service := o.ServiceUnit
	if service == "" {
		service = o.Name + ".service"
	} else if err := checkUnit("service unit", service, ".service"); err != nil {
		return "", err
	}
	if err := checkAccount("user", o.User); err != nil {
		return "", err
	}
	self := o.Name + ".socket"
	if len(o.Listen) == 0 {
		return "", fmt.Errorf("unitfile: socket unit %s: no listeners", self)
	}
	var ls []listenLine
	seen := make(map[string]bool)
	for _, l := range o.Listen {
		if err := checkFDName(l); err != nil {
			return "", err
		}
		if l.Name != o.Listen[0].Name {
			return "", fmt.Errorf("unitfile: socket unit %s: listeners %q and %q have different names, "+
				"but systemd gives one FileDescriptorName= to all sockets of a unit; "+
				"render one socket unit per name (e.g. %s-%s.socket and %s-%s.socket, each with ServiceUnit %q) "+
				"and list them all in the service's SocketUnits",
				self, o.Listen[0].Name, l.Name, o.Name, o.Listen[0].Name, o.Name, l.Name, service)
		}
		line, err := listenSetting(l)
		if err != nil {
			return "", err
		}
		if seen[line.key+line.value] {
			return "", fmt.Errorf("unitfile: socket unit %s: listener %s %s is given twice", self, l.Network, l.Addr)
		}
		seen[line.key+line.value] = true
		for _, prev := range ls {
			if prev.v6only != "" && line.v6only != "" && prev.v6only != line.v6only {
				return "", fmt.Errorf("unitfile: socket unit %s: listeners %s://%s and %s://%s need different BindIPv6Only= "+
					"(%s and %s), which is one setting per unit; render one socket unit each",
					self, prev.listen.Network, prev.listen.Addr, l.Network, l.Addr, prev.v6only, line.v6only)
			}
		}
		ls = append(ls, line)
	}
	var v6only string
	var inet, freeBind, tcp bool
	for _, l := range ls {
		if l.v6only != "" {
			v6only = l.v6only
		}
		inet = inet || l.inet
		freeBind = freeBind || l.freeBind
		tcp = tcp || l.inet && l.key == "ListenStream"
	}

	var u unit
	u.comment(self+": the listening sockets of "+service+", generated by hotcluster.",
		"After editing it, run: systemctl daemon-reload")

	u.section("Unit")
	u.set("Description", "Listening sockets of "+escapeSpecifiers(service))

	u.section("Socket")
	u.comment("One line per --listen. systemd opens them once and keeps them open across",
		"restarts of the service; hotcluster uses them instead of binding its own.")
	for _, l := range ls {
		u.set(l.key, l.value)
	}
	u.comment("The --listen NAME: LISTEN_FDNAMES tells hotcluster which listener this is.")
	u.set("FileDescriptorName", o.Listen[0].Name)
	switch v6only {
	case "both":
		u.comment("Like hotcluster's own \"--listen :PORT\": one IPv6 socket that takes IPv4 too.")
		u.set("BindIPv6Only", "both")
	case "ipv6-only":
		u.comment("tcp6:// and udp6:// listen on IPv6 only, as hotcluster's own sockets do.")
		u.set("BindIPv6Only", "ipv6-only")
	}
	if freeBind {
		u.comment("Bind even before the address is up: socket units start early in boot.")
		u.set("FreeBind", "yes")
	}
	if inet {
		u.comment("hotcluster adds its own sockets to this one's SO_REUSEPORT group and steers",
			"new connections to the generation that is ready; without ReusePort=yes it",
			"falls back to one shared socket for every generation.")
		if o.User != "" && o.User != "root" && o.User != "0" {
			u.comment("The kernel lets only sockets of the same user join a group, and systemd",
				"creates these as root: with User="+o.User+", hotcluster shares them instead.")
		}
		u.set("ReusePort", "yes")
	}
	if tcp {
		if o.Nagle {
			u.comment("Nagle's algorithm stays on (hotcluster run --nodelay=false).")
			u.set("NoDelay", "false")
		} else {
			u.comment("TCP_NODELAY, as hotcluster sets on its own sockets: accepted connections",
				"inherit it, and answers are not held back by Nagle's algorithm.")
			u.set("NoDelay", "true")
		}
	}
	u.set("Service", service)

	u.section("Install")
	u.set("WantedBy", "sockets.target")
	return u.String(), nil
}

// listenLine is one ListenStream=/ListenDatagram= setting and what it
// demands of the whole unit.
type listenLine struct {
	listen     Listen
	key, value string
	// v6only is the BindIPv6Only= the listener needs, or "".
	v6only   string
	inet     bool
	freeBind bool
}

// listenSetting turns a listener into systemd's address syntax
// (systemd.socket(5), ListenStream=): "PORT" for all addresses,
// "a.b.c.d:PORT", "[x:y::z]:PORT" with an optional "%dev" after the port,
// "/path" or "@abstract".
func listenSetting(l Listen) (listenLine, error) {
	line := listenLine{listen: l, key: "ListenStream"}
	bad := func(format string, args ...any) (listenLine, error) {
		return listenLine{}, fmt.Errorf("unitfile: listener %s %s://%s: %s", l.Name, l.Network, l.Addr, fmt.Sprintf(format, args...))
	}
	switch l.Network {
	case "unix":
		if err := plainValue("listener "+l.Name+" socket path", l.Addr); err != nil {
			return listenLine{}, err
		}
		switch {
		case strings.HasPrefix(l.Addr, "@"):
			if len(l.Addr) == 1 {
				return bad("empty abstract socket name")
			}
		case !filepath.IsAbs(l.Addr):
			return bad("want an absolute socket path or @abstract")
		case filepath.Clean(l.Addr) != l.Addr:
			return bad("not a clean path; want %s", filepath.Clean(l.Addr))
		}
		if len(l.Addr) > 107 {
			return bad("socket path is %d bytes long; the kernel allows 107", len(l.Addr))
		}
		line.value = escapeSpecifiers(l.Addr)
		return line, nil
	case "udp", "udp4", "udp6":
		line.key = "ListenDatagram"
	case "tcp", "tcp4", "tcp6":
	default:
		return bad("unknown network; want tcp, tcp4, tcp6, udp, udp4, udp6 or unix")
	}
	line.inet = true
	only4 := strings.HasSuffix(l.Network, "4")
	only6 := strings.HasSuffix(l.Network, "6")
	host, portStr, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return bad("want [HOST]:PORT, e.g. :8080, 127.0.0.1:8080 or [::1]:8080")
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return bad("port %q: a socket unit needs a fixed port from 1 to 65535", portStr)
	}
	p := strconv.FormatUint(port, 10)
	if host == "" {
		switch {
		case only4:
			line.value = "0.0.0.0:" + p
		case only6:
			line.value, line.v6only = "[::]:"+p, "ipv6-only"
		default:
			line.value, line.v6only = p, "both"
		}
		return line, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return bad("socket units take an IP address, not a host name (e.g. 127.0.0.1 or [::1] for localhost)")
	}
	ip = ip.Unmap()
	line.freeBind = !ip.IsUnspecified() && !ip.IsLoopback()
	if ip.Is4() {
		if only6 {
			return bad("%s is not an IPv6 address", ip)
		}
		line.value = ip.String() + ":" + p
		return line, nil
	}
	if only4 {
		return bad("%s is not an IPv4 address", ip)
	}
	zone := ip.Zone()
	line.value = "[" + ip.WithZone("").String() + "]:" + p
	if zone != "" {
		if strings.IndexFunc(zone, func(r rune) bool { return r <= ' ' || r == '/' || r >= 0x7f }) >= 0 {
			return bad("invalid interface name %q", zone)
		}
		line.value += "%%" + escapeSpecifiers(zone) // '%' would start a specifier
	}
	if ip.IsUnspecified() {
		line.v6only = "both"
		if only6 {
			line.v6only = "ipv6-only"
		}
	}
	return line, nil
}

// defaultDescription is "hotcluster: " and the worker command, made safe
// for a unit file.
func defaultDescription(args []string) string {
	cmd := args
	for i, a := range args {
		if a == "--" {
			cmd = args[i+1:]
			break
		}
	}
	d := strings.Map(func(r rune) rune {
		if isControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, strings.Join(cmd, " "))
	d = strings.TrimRight(d, `\ `)
	if d == "" {
		return "hotcluster"
	}
	return "hotcluster: " + d
}

func timeout(field string, d, def time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("unitfile: %s %s: negative", field, d)
	case d == 0:
		return def, nil
	}
	return d, nil
}

// span writes d as a systemd time span (systemd.time(7)), rounded up to
// the millisecond.
func span(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "ms"
}

// checkBase checks a unit base name (systemd's unit_name_is_valid, with
// "@" refused since no template is rendered).
func checkBase(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("unitfile: empty unit name; want a base name such as \"myapp\"")
	case strings.HasSuffix(name, ".service") || strings.HasSuffix(name, ".socket"):
		return fmt.Errorf("unitfile: unit name %q: give the base name, without .service or .socket", name)
	case strings.Contains(name, "@"):
		return fmt.Errorf("unitfile: unit name %q: '@' makes a template unit, which is not supported here", name)
	case len(name)+len(".service") > 255:
		return fmt.Errorf("unitfile: unit name %q: %d bytes long; systemd allows 255 with the suffix", name, len(name)+len(".service"))
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(`:-_.\`, r)) {
			return fmt.Errorf("unitfile: unit name %q: systemd allows only ASCII letters, digits and \":-_.\\\" (systemd-escape turns any string into such a name)", name)
		}
	}
	return nil
}

// checkUnit checks a full unit name with the given suffix.
func checkUnit(field, name, suffix string) error {
	base, ok := strings.CutSuffix(name, suffix)
	if !ok || base == "" {
		return fmt.Errorf("unitfile: %s %q: want a name ending in %s", field, name, suffix)
	}
	return checkBase(base)
}

func checkExec(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("unitfile: empty Exec: want the absolute path of the hotcluster binary")
	case !filepath.IsAbs(p):
		return fmt.Errorf("unitfile: exec %q: not an absolute path; systemd would look it up in its own search path (resolve it, e.g. with os.Executable)", p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("unitfile: exec %q: not a clean path; want %q", p, filepath.Clean(p))
	case strings.ContainsAny(p, `"'\`):
		return fmt.Errorf("unitfile: exec %q: systemd refuses quotes and backslashes in an executable path", p)
	case strings.Contains(p, "$"):
		return fmt.Errorf("unitfile: exec %q: systemd would substitute a variable for the '$' in argv[0]", p)
	}
	return plainValue("exec", p)
}

func checkDir(d string) error {
	if d == "" || d == "~" {
		return nil
	}
	if err := plainValue("working directory", d); err != nil {
		return err
	}
	if !filepath.IsAbs(d) {
		return fmt.Errorf("unitfile: working directory %q: want an absolute path or \"~\"", d)
	}
	if filepath.Clean(d) != d {
		return fmt.Errorf("unitfile: working directory %q: not a clean path; want %q", d, filepath.Clean(d))
	}
	return nil
}

// checkAccount accepts the portable user and group names (and numeric
// IDs), a subset of what systemd accepts.
func checkAccount(field, v string) error {
	if v == "" {
		return nil
	}
	for i, r := range v {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || i > 0 && (r == '-' || r == '.')) {
			return fmt.Errorf("unitfile: %s %q: want ASCII letters, digits, '_', and '-' or '.' after the first character", field, v)
		}
	}
	if len(v) > 255 {
		return fmt.Errorf("unitfile: %s %q: too long", field, v)
	}
	return nil
}

func checkEnv(e string) error {
	k, v, ok := strings.Cut(e, "=")
	if !ok {
		return fmt.Errorf("unitfile: environment %q: want K=V", e)
	}
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return fmt.Errorf("unitfile: environment %q: a variable name must not be empty or start with a digit", e)
	}
	for _, r := range k {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_') {
			return fmt.Errorf("unitfile: environment %q: systemd allows only ASCII letters, digits and '_' in a variable name", e)
		}
	}
	if strings.IndexFunc(v, isControl) >= 0 || !utf8.ValidString(v) {
		return fmt.Errorf("unitfile: environment %q: systemd refuses control characters and invalid UTF-8 in a value", e)
	}
	return nil
}

// checkFDName accepts the names `hotcluster run --listen NAME=` accepts,
// which systemd's FileDescriptorName= accepts too.
func checkFDName(l Listen) error {
	if l.Name == "" {
		return fmt.Errorf("unitfile: listener %s://%s: empty name; want its --listen NAME (e.g. web, or tcp-8080 by default)", l.Network, l.Addr)
	}
	if len(l.Name) > 255 {
		return fmt.Errorf("unitfile: listener name %q: systemd allows 255 bytes", l.Name)
	}
	for _, r := range l.Name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("unitfile: listener name %q: may hold only letters, digits, '-', '_' and '.', as in --listen NAME=", l.Name)
		}
	}
	return nil
}

// unit accumulates the text of a unit file.
type unit struct {
	b strings.Builder
}

func (u *unit) section(name string) {
	u.b.WriteString("\n[" + name + "]\n")
}

func (u *unit) comment(lines ...string) {
	for _, l := range lines {
		u.b.WriteString("# " + l + "\n")
	}
}

func (u *unit) set(key, value string) {
	u.b.WriteString(key + "=" + value + "\n")
}

func (u *unit) String() string { return u.b.String() }
