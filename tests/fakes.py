"""Test doubles shared by the test modules: a local stand-in for the Perspective API."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def perspective_body(value: float, attribute: str = "TOXICITY") -> dict:
    """A successful Perspective response scoring `attribute` `value`."""
    return {"attributeScores": {attribute: {"summaryScore": {"value": value, "type": "PROBABILITY"}}}}


class FakePerspective:
    """A Perspective API on 127.0.0.1 (a random free port), for `with FakePerspective() as api:`.

    Answers each POST with the next entry of `plan` — (status, body, headers), optionally with a fourth
    element: seconds to wait before replying — and, once the plan is used up, 200 with `score`. Records
    every request in `requests` (path, headers, JSON body, arrival time)."""

    def __init__(self, score: float = 0.42, plan: list[tuple[Any, ...]] | None = None):
        self.score = score
        self.plan: list[tuple[Any, ...]] = list(plan or [])
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _next(self) -> tuple[int, dict, dict, float]:
        if not self.plan:
            return 200, perspective_body(self.score), {}, 0.0
        status, body, headers, *delay = self.plan.pop(0)
        return status, body, headers, (delay[0] if delay else 0.0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "time": time.monotonic()}
                )
                status, payload, headers, delay = fake._next()
                time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout tests)
                    pass

            def log_message(self, *args):
                pass

        return Handler

    def start(self) -> FakePerspective:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1alpha1/comments:analyze"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = self._thread = None

    def __enter__(self) -> FakePerspective:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
