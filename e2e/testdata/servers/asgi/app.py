# An ASGI app for uvicorn.
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ("hello pid=%d gen=%s worker=%s\n" % (os.getpid(), os.environ.get("HOTCLUSTER_GENERATION"),
                                                 os.environ.get("HOTCLUSTER_WORKER_ID"))).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
