# A stock Python ThreadingHTTPServer on hotcluster's socket, keep-alive
# (HTTP/1.1), with nothing of its own for the drain: SIGTERM's default
# action ends it with its keep-alive connections open.
import http.server
import os
import socket


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello pid={os.getpid()} gen={os.environ.get('HOTCLUSTER_GENERATION')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        pass

    def server_activate(self):
        pass


srv = Server(("127.0.0.1", 0), Hello, bind_and_activate=False)
srv.socket.close()
srv.socket = socket.socket(fileno=3)
srv.serve_forever()
