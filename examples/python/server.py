#!/usr/bin/env python3
"""A Python 3 HTTP server, standard library only, that runs under hotcluster.

It serves the listening socket it inherits on fd 3 (systemd's socket
activation: LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) or, run by hand,
--addr (127.0.0.1:8080). It answers "hello pid=... gen=... worker=..." on
every path, and the same line after N ms on /slow?ms=N. Once it listens it
sends READY=1 to NOTIFY_SOCKET; on SIGTERM it closes its listener, finishes
the requests in flight and exits 0.

The inherited socket is non-blocking, and O_NONBLOCK is a flag of the open
file description shared with the master and every other worker: calling
setblocking() or settimeout() on it would change it for all of them. So the
listener is only ever used through a selector and non-blocking accept(); the
accepted connections are sockets of their own, which may block.
"""

import argparse
import os
import selectors
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

DRAIN_IDLE = 2.0  # seconds idle keep-alive clients get to send a last request
DRAIN_MAX = 25.0  # seconds running requests get before the process exits
IDLE_TIMEOUT = 5.0  # keep-alive connections idle longer than this are closed

LINE = "hello pid=%d gen=%s worker=%s\n" % (
    os.getpid(),
    os.environ.get("HOTCLUSTER_GENERATION", "0"),
    os.environ.get("HOTCLUSTER_WORKER_ID", "-1"),
)

draining = threading.Event()


def inherited_listener():
    """Returns the inherited socket named "web" (or the first), or None."""
    n = os.environ.get("LISTEN_FDS", "")
    for_us = os.environ.get("LISTEN_PID") == str(os.getpid())
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    # Our own subprocesses must not take the sockets for theirs.
    for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
        os.environ.pop(k, None)
    if not for_us or not n.isdigit() or int(n) < 1:
        return None
    n = int(n)
    for fd in range(3, 3 + n):
        os.set_inheritable(fd, False)  # FD_CLOEXEC: a flag of our fd only
    i = names.index("web") if "web" in names[:n] else 0
    # socket(fileno=) reads family and type from the descriptor and, with no
    # default timeout set, leaves its blocking mode alone.
    return socket.socket(fileno=3 + i)


class Notifier:
    """systemd's notify protocol: one datagram per message."""

    def __init__(self):
        addr = os.environ.pop("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract address
        self.addr = addr

    def send(self, msg):
        if not self.addr:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(self.addr)
            s.sendall(msg.encode())


class Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's
    # algorithm and the client's delayed ACK hold the body back 40 ms.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = IDLE_TIMEOUT  # applies to the accepted connection only

    def handle_one_request(self):
        self.server.set_idle(self, True)
        super().handle_one_request()

    def parse_request(self):
        self.server.set_idle(self, False)
        return super().parse_request()

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/slow":
            try:
                ms = int(parse_qs(url.query).get("ms", [""])[0])
            except ValueError:
                ms = -1
            if not 0 <= ms <= 60000:
                self.reply(400, "want ms=0...60000\n")
                return
            time.sleep(ms / 1000)
        self.reply(200, LINE)

    def reply(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if draining.is_set():
            # During the drain every answer closes its connection, so the
            # client moves to a new one, which another worker accepts.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # no line per request


class Connections:
    """The open connections, each served by a thread; the 'server' that
    BaseHTTPRequestHandler sees."""

    def __init__(self):
        self.lock = threading.Lock()
        self.idle = {}  # handler -> True while it waits for a request
        self.threads = set()

    def set_idle(self, handler, idle):
        with self.lock:
            self.idle[handler] = idle

    def serve(self, conn, addr):
        def run():
            handler = None
            try:
                handler = Handler.__new__(Handler)
                Handler.__init__(handler, conn, addr, self)
            except OSError:
                pass  # client went away, or the drain closed it
            finally:
                with self.lock:
                    self.idle.pop(handler, None)
                    self.threads.discard(threading.current_thread())
                conn.close()

        t = threading.Thread(target=run)
        with self.lock:
            self.threads.add(t)
        t.start()

    def close_idle(self):
        """Closes connections waiting for a request. A client may be sending
        one at this very moment; that race is why the drain waits first."""
        with self.lock:
            for handler, idle in self.idle.items():
                if idle:
                    try:
                        handler.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def running(self):
        with self.lock:
            return list(self.threads)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:8080", help="address to listen on when no socket is inherited")
    args = p.parse_args()

    notifier = Notifier()
    ln = inherited_listener()
    if ln is None:
        host, _, port = args.addr.rpartition(":")
        ln = socket.create_server((host, int(port)), reuse_port=False)
        ln.setblocking(False)  # our own socket: one accept loop for both cases
    where = "%s:%s" % ln.getsockname()[:2] if ln.family != socket.AF_UNIX else ln.getsockname()

    # The signal handler only wakes the loop; the loop does the work.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    stop_count = 0

    def on_signal(signum, frame):
        nonlocal stop_count
        stop_count += 1
        if stop_count > 1:
            os._exit(1)  # a second signal: stop at once
        try:
            wake_w.send(b"x")
        except OSError:
            pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    conns = Connections()
    sel = selectors.DefaultSelector()
    sel.register(ln, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    sys.stderr.write("python: serving on %s, %s" % (where, LINE))
    notifier.send("READY=1")

    while True:
        events = sel.select()
        if any(key.fileobj is wake_r for key, _ in events):
            break
        try:
            conn, addr = ln.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue  # another worker took it, or the client left
        conn.setblocking(True)  # a socket of its own, not shared
        conns.serve(conn, addr)

    draining.set()
    try:
        notifier.send("STOPPING=1")
    except OSError:
        pass  # the master may be gone; drain anyway
    sel.unregister(ln)
    ln.close()  # close(2) our copy only; never shutdown(2) a shared listener

    deadline = time.monotonic() + DRAIN_MAX
    idle_deadline = time.monotonic() + DRAIN_IDLE
    idle_closed = False
    while True:
        threads = conns.running()
        if not threads:
            break
        now = time.monotonic()
        if now >= deadline:
            sys.stderr.write("python: drain timed out pid=%d\n" % os.getpid())
            os._exit(1)
        if not idle_closed and now >= idle_deadline:
            conns.close_idle()
            idle_closed = True
        limit = idle_deadline if not idle_closed else deadline
        threads[0].join(timeout=min(0.05, max(0.0, limit - now)))
    sys.stderr.write("python: stopped pid=%d\n" % os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
