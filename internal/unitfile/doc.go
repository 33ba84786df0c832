// Package unitfile renders systemd unit files that run `hotcluster run …`:
// a .service and, for socket activation, a .socket.
//
// Invariant: a rendered unit makes systemd run exactly the given strings.
// Every value is validated and escaped for the setting it goes into (quotes
// and C escapes where systemd unquotes, "%%" for specifiers everywhere,
// "$$" on command lines), and anything systemd would refuse, reinterpret or
// silently change (control characters, a relative executable, a host name
// where systemd wants an IP address, two listener names in one socket unit)
// is an error naming the field, never a unit that fails later. The tests
// check this against systemd itself: `systemd-analyze verify`, and the
// command lines that `systemd --test` reads back.
//
// # The units
//
// The service runs hotcluster as a Type=notify main process that owns the
// worker group: systemd sees READY=1 once the first generation serves,
// RELOADING=1 … READY=1 around each reload, and STOPPING=1 while it drains.
// `systemctl reload` sends SIGHUP. NotifyAccess=main: workers never see
// systemd's notify socket, and on a binary upgrade the old master hands over
// with MAINPID= before it exits, after which only the new master is heard
// (with "all", a retiring master's STOPPING=1 would stop the service). On
// stop, only hotcluster gets SIGTERM (KillMode=mixed) and drains the workers
// itself within --drain-timeout; TimeoutStopSec= is longer than that so that
// systemd never SIGKILLs a draining group. The generated file explains each
// setting in a comment, since it is the users who read it.
//
// The socket unit lists the listeners of `--listen` and names them with
// FileDescriptorName=, so LISTEN_FDNAMES tells hotcluster which --listen each
// inherited socket is. systemd gives one name to every socket of a unit,
// hence one socket unit per listener name ([Options.SocketUnits] and
// [Options.ServiceUnit] tie several of them to one service). ReusePort=yes
// lets hotcluster steer new connections between generations instead of
// falling back to one shared socket (the kernel lets only sockets of one user
// join a group, so with User= set the root-made sockets stay shared);
// NoDelay=true matches the TCP_NODELAY of hotcluster's own sockets
// ([Options.Nagle] writes false, for run --nodelay=false); NonBlocking=yes in the service makes the inherited sockets non-blocking, as
// the worker contract promises.
//
// Install them with:
//
//	install -m 0644 myapp.service myapp.socket /etc/systemd/system/
//	systemctl daemon-reload
//	systemctl enable --now myapp.socket myapp.service
package unitfile
