"""/healthz, /readyz and /metrics for consumer processes (the gateway serves its own).

Readiness runs the service's checks (broker metadata, a database ping); a failing check answers
503 with its error, so an orchestrator stops routing to, or restarts, a process that cannot work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Check = Callable[[], None]


def serve_health(port: int, checks: Mapping[str, Check], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b'{"status":"ok"}')
            elif self.path == "/readyz":
                failures = {}
                for name, check in checks.items():
                    try:
                        check()
                    except Exception as exc:
                        failures[name] = f"{type(exc).__name__}: {exc}"
                status = 503 if failures else 200
                body = {"status": "unavailable", "failures": failures} if failures else {"status": "ready"}
                self._send(status, orjson.dumps(body))
            else:
                self._send(404, b'{"error":"not_found"}')

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the logs

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
