"""A local stand-in for the SCIN bucket: serves files over HTTP on 127.0.0.1, with Range support.

``server.cut[path] = n`` makes the next response for ``path`` stop after ``n`` bytes and drop the
connection (an interrupted download); ``server.status[path] = 403`` answers with that status.
Every request is recorded as ``(path, range header)``.
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BucketServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.cut: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> BucketServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                path, wanted = self.path, self.headers.get("Range")
                with server._lock:
                    server.requests.append((path, wanted))
                    status = server.status.get(path)
                    cut = server.cut.pop(path, None)
                if status is not None or path not in server.files:
                    body = b"<html>nope</html>"
                    self.send_response(status or 404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = server.files[path]
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if cut is None:
                    self.wfile.write(data[start:])
                    return
                self.wfile.write(data[start : start + cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        return Handler
