"""A real HTTP server on 127.0.0.1 serving checkpoint files for ``fetch_model`` tests.

Range requests are answered with 206 as Meta's CDN does; a test can make the next responses for
a path stop halfway (``drops``), claim a size the disk cannot hold (``announce``), or hold a
response after its first half until the test has seen the download's progress (``gates``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CheckpointServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.drops: dict[str, int] = {}  # path -> how many more responses to cut halfway
        self.announce: dict[str, int] = {}  # path -> a Content-Length to claim, with no body
        self.gates: dict[str, threading.Event] = {}  # path -> sent after the first half once set
        self.requests: list[tuple[str, str | None]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: CheckpointServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        if self.path in self.server.announce:
            self.send_response(200)
            self.send_header("Content-Length", str(self.server.announce[self.path]))
            self.end_headers()
            return
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        half = len(body) // 2
        if self.server.drops.get(self.path, 0) > 0:
            self.server.drops[self.path] -= 1
            self.wfile.write(body[:half])
            self.close_connection = True
            return
        gate = self.server.gates.get(self.path)
        if gate is not None:
            self.wfile.write(body[:half])
            self.wfile.flush()
            gate.wait(120)
            body = body[half:]
        self.wfile.write(body)


@contextmanager
def checkpoint_server() -> Iterator[CheckpointServer]:
    httpd = CheckpointServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        for gate in httpd.gates.values():
            gate.set()
        httpd.shutdown()
        httpd.server_close()
