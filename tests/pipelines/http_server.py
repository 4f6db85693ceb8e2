"""A local HTTP server for fetch tests (127.0.0.1 only): serves files, 404s, slow
responses, bodies shorter than their Content-Length, and a 503 before the file."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Server:
    def __init__(self, files: dict[str, bytes], slow_seconds: float = 3.0) -> None:
        self.files, self.slow_seconds = files, slow_seconds
        self.requests: list[str] = []
        self.flaky_seen: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _respond(self, body: bool) -> None:
                server.requests.append(f"{self.command} {self.path}")
                kind, _, name = self.path.lstrip("/").partition("/")
                data = server.files.get(name)
                if data is None or kind not in ("files", "slow", "truncated", "flaky"):
                    self.send_error(404, "Not Found")
                    return
                if kind == "flaky" and self.command == "GET" and name not in server.flaky_seen:
                    server.flaky_seen.add(name)
                    self.send_error(503, "Service Unavailable")
                    return
                if kind == "slow":
                    time.sleep(server.slow_seconds)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data[: len(data) // 2] if kind == "truncated" else data)
                    self.wfile.flush()
                    if kind == "truncated":
                        self.close_connection = True

            def do_HEAD(self) -> None:  # noqa: N802
                self._respond(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._respond(body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
