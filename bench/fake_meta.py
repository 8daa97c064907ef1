"""The fake Meta Conversions API (tests/fakes/meta.py) in a process of its own, so that its HTTP
handling does not share a GIL with the load generator or the bench's own bookkeeping.

`python -m bench.fake_meta --port PORT`; it counts what it accepted on `GET /bench/stats`.
"""

from __future__ import annotations

import argparse
import signal
import threading

from aiohttp import web

from bench.infra import META_DATASET, META_TOKEN
from tests.fakes.meta import FakeMeta


class CountingFakeMeta(FakeMeta):
    """Keeps counts instead of every request: a long benchmark would otherwise hold gigabytes."""

    def __init__(self, port: int) -> None:
        super().__init__(tokens=(META_TOKEN,), dataset_ids=(META_DATASET,), port=port)
        self.accepted_events = 0
        self.accepted_requests = 0

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_get("/bench/stats", self._stats)

    def _record(self, events: list[dict[str, object]]) -> None:
        self.accepted_events += len(events)
        self.accepted_requests += 1
        self._state.requests.clear()

    async def _stats(self, _request: web.Request) -> web.Response:
        with self._lock:
            self._state.requests.clear()
            return web.json_response({"events": self.accepted_events, "requests": self.accepted_requests})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with CountingFakeMeta(args.port):
        stop.wait()


if __name__ == "__main__":
    main()
