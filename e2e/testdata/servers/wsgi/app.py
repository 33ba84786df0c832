# A WSGI app for gunicorn and uWSGI. The import takes 300 ms, as a real
# app's does: a server that reports ready before its workers imported the
# app (gunicorn without --preload) makes the first requests of a new
# generation wait for it.
import os
import time

time.sleep(0.3)


def app(environ, start_response):
    body = ("hello pid=%d gen=%s worker=%s\n" % (os.getpid(), os.environ.get("HOTCLUSTER_GENERATION"),
                                                 os.environ.get("HOTCLUSTER_WORKER_ID"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
