"""A web server on 127.0.0.1 that tests can make misbehave (endless, dripping, lying bodies).

Each test module subclasses :class:`HostileHandler` with its own ``route(path)``; the server
counts requests and bytes sent per path. A handler never serves longer than ``serve_s`` and
stops when the client goes away or the server stops, so nothing outlives a test.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import threading
import time
from collections.abc import Iterator


class HostileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[HostileHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}   # path -> requests (GET and HEAD)
        self.sent: dict[str, int] = {}       # path -> body bytes written
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="PNG")
        self.ok_png = buf.getvalue()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class HostileHandler(http.server.BaseHTTPRequestHandler):
    server: HostileServer
    #: No handler serves longer than this, whatever the client does.
    serve_s = 20.0

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def route(self, path: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.started = time.monotonic()
        with self.server.lock:
            self.server.requests[self.path] = self.server.requests.get(self.path, 0) + 1
        self.route(self.path)

    def _send(self, data: bytes) -> bool:
        """Write ``data``; False when the client went away or the server is stopping."""
        if self.server.stopping.is_set() or time.monotonic() > self.started + self.serve_s:
            return False
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        with self.server.lock:
            self.server.sent[self.path] = self.server.sent.get(self.path, 0) + len(data)
        return True

    def _whole(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send(body)


@contextlib.contextmanager
def serving(handler: type[HostileHandler]) -> Iterator[HostileServer]:
    """A running server for ``handler``, stopped (and its handlers told to stop) afterwards."""
    server = HostileServer(handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
