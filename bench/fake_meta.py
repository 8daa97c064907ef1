"""The fake Meta Conversions API (tests/fakes/meta.py) in a process of its own, so that its HTTP
handling does not share a GIL with the load generator or the bench's own bookkeeping.

`python -m bench.fake_meta --port PORT [--any-dataset] [--latency SECONDS] [--hang DATASET_ID ...]`.
It keeps counts instead of every request (`GET /bench/stats`), and, for the forwarding benchmark, when
each accepted event arrived, in a bounded buffer read with a cursor (`GET /bench/arrivals?after=N`).
`POST /bench/control` with `{"latency": s, "hang": [dataset ids], "unhang": [dataset ids]}` changes the
answer latency and which datasets' event requests are held (FakeServer.set_latency / hang / unhang):
hanging one dataset id hangs one app. Control requests wait out the latency like any other.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections import Counter, deque
from contextvars import ContextVar
from itertools import islice
from typing import Any

from aiohttp import web

from bench.infra import META_DATASET, META_TOKEN
from tests.fakes.base import RECORDED
from tests.fakes.meta import GRAPH_VERSION, FakeMeta

ARRIVALS_KEPT = 200_000  # about 30 MB; the bench reads them every half second, so none is ever dropped
# (dataset id, time.time() when the request arrived, before any latency or hang) of the request being handled
_REQUEST: ContextVar[tuple[str, float]] = ContextVar("request")


def events_path(dataset_id: str) -> str:
    """The path fragment of one dataset's event requests, for FakeServer.hang."""
    return f"/{GRAPH_VERSION}/{dataset_id}/events"


class CountingFakeMeta(FakeMeta):
    """Keeps counts instead of every request: a long benchmark would otherwise hold gigabytes."""

    def __init__(self, port: int, any_dataset: bool = False) -> None:
        super().__init__(tokens=(META_TOKEN,), dataset_ids=None if any_dataset else (META_DATASET,), port=port)
        self.accepted_events = 0
        self.accepted_requests = 0
        self.events_by_dataset: Counter[str] = Counter()
        # (event_id, dataset_id, received_ms, answered_ms); the absolute index of the first is `_dropped`.
        self._arrivals: deque[tuple[str, str, int, int]] = deque(maxlen=ARRIVALS_KEPT)
        self._dropped = 0

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_get("/bench/stats", self._stats)
        app.router.add_get("/bench/arrivals", self._arrivals_after)
        app.router.add_post("/bench/control", self._control)

    async def _post_events(self, request: web.Request) -> web.Response:
        _REQUEST.set((request.match_info["dataset_id"], request[RECORDED].at))  # per task: safe across requests
        return await super()._post_events(request)

    def _record(self, events: list[dict[str, object]]) -> None:
        self.accepted_events += len(events)
        self.accepted_requests += 1
        self._state.requests.clear()
        dataset_id, received = _REQUEST.get(("?", time.time()))
        self.events_by_dataset[dataset_id] += len(events)
        received_ms, answered_ms = int(received * 1000), int(time.time() * 1000)
        for event in events:
            if len(self._arrivals) == ARRIVALS_KEPT:
                self._dropped += 1
            self._arrivals.append((str(event.get("event_id")), dataset_id, received_ms, answered_ms))

    async def _stats(self, _request: web.Request) -> web.Response:
        with self._lock:
            self._state.requests.clear()
            return web.json_response({"events": self.accepted_events, "requests": self.accepted_requests,
                                      "datasets": len(self.events_by_dataset),
                                      "latency_s": self._state.latency, "hung": sorted(self._state.hung)})

    async def _arrivals_after(self, request: web.Request) -> web.Response:
        """Arrivals from absolute index `after` on; `dropped` counts those pushed out of the buffer unread."""
        after = int(request.query.get("after", "0"))
        with self._lock:
            start = max(after - self._dropped, 0)
            rows = list(islice(self._arrivals, start, None))
            return web.json_response({"next": self._dropped + len(self._arrivals), "rows": rows,
                                      "dropped": max(self._dropped - after, 0)})

    async def _control(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = request[RECORDED].body or {}
        if "latency" in body:
            self.set_latency(float(body["latency"]))
        for dataset_id in body.get("hang", []):
            self.hang(events_path(dataset_id))
        for dataset_id in body.get("unhang", []):
            self.unhang(events_path(dataset_id))
        return await self._stats(request)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--any-dataset", action="store_true",
                        help=f"every dataset id exists (else only {META_DATASET})")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--hang", action="append", default=[], metavar="DATASET_ID",
                        help="hold this dataset's event requests for an hour (repeatable)")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with CountingFakeMeta(args.port, any_dataset=args.any_dataset) as fake:
        fake.set_latency(args.latency)
        for dataset_id in args.hang:
            fake.hang(events_path(dataset_id))
        stop.wait()


if __name__ == "__main__":
    main()
