# A Python standard-library HTTP server on hotcluster's socket, with
# python3-systemd: the listener from systemd.daemon.listen_fds() (which
# checks LISTEN_PID), READY=1 with systemd.daemon.notify, a thread per
# connection with keep-alive, and on SIGTERM a drain that waits for every
# request in flight (non-daemon handler threads, block_on_close).
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from systemd import daemon


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # TCP_NODELAY on each connection: without it a keep-alive answer can
    # wait 40 ms for a delayed ACK (hotcluster sets it on its listening
    # sockets, which accepted ones inherit; --nodelay=false turns that off).
    disable_nagle_algorithm = True

    def do_GET(self):
        body = ("hello pid=%d gen=%s worker=%s\n" % (os.getpid(), os.environ.get("HOTCLUSTER_GENERATION"),
                                                     os.environ.get("HOTCLUSTER_WORKER_ID"))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # Handler threads are joined at server_close(): daemon threads would
    # die with the interpreter, in the middle of their requests.
    daemon_threads = False
    block_on_close = True

    def __init__(self, sock):
        super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
        self.socket = sock


fds = daemon.listen_fds()
if not fds:
    raise SystemExit("no socket from LISTEN_FDS")
# The listener is non-blocking, shared with the master: never change it
# (no setblocking, no settimeout); serve_forever waits in select.
sock = socket.socket(fileno=fds[0])
server = Server(sock)
stopping = threading.Event()


def stop(*_):
    stopping.set()
    # shutdown() waits for serve_forever, which runs in this thread's
    # caller: from another thread.
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
daemon.notify("READY=1")
server.serve_forever(poll_interval=0.1)
server.server_close()  # closes the listener (never shutdown(2)), joins handlers
