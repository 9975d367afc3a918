"""Test doubles for the streaming sources: a fake clock and a real local HTTP server.

The server is a real ``ThreadingHTTPServer`` on 127.0.0.1; the client under test talks HTTP to it
through ``requests`` exactly as to the real API. Scripted replies (``server.queue``) are served
first, in order; after that a per-API ``default`` handler answers like the real API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from finpulse.ingest.http import Timing

DROP = -1  # a Reply with this status closes the connection without answering


class FakeClock:
    """Wall-clock seconds that only move when someone sleeps; records every sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def timing(self) -> Timing:
        return Timing(clock=self.clock, sleep=self.sleep)


@dataclass
class Reply:
    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]


class ScriptedServer:
    """A local HTTP server: queued replies first, then ``default(request)``."""

    def __init__(self, default: Callable[[Seen], Reply]) -> None:
        self.default = default
        self.queue: list[Reply] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def _next(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            if self.queue:
                return self.queue.pop(0)
        return self.default(seen)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                seen = Seen(parts.path, dict(parse_qsl(parts.query)), {k.lower(): v for k, v in self.headers.items()})
                reply = server._next(seen)
                if reply.status == DROP:
                    self.close_connection = True
                    return
                data, headers = reply.payload(), dict(reply.headers)
                self.send_response(reply.status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
