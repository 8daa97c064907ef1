"""A real HTTP server for tests: an aiohttp app on 127.0.0.1 in a background thread with its own event loop.

The thread keeps the fake independent of the test's own loop, so sync tests, async tests and services run as
subprocesses can all talk to it. Every request is recorded; scripted failures answer errors before the app sees
the request (the way an outage or a rate limiter in front of the real API would).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: Any  # parsed JSON, a dict for form bodies, the raw text when neither parses, None when empty
    at: float  # time.time() on arrival
    status: int | None = None  # filled in once answered


# Handlers read the parsed body from here instead of reading and parsing the request again.
RECORDED = web.RequestKey("recorded", RecordedRequest)


@dataclass
class _ScriptedFailure:
    status: int
    body: Any
    headers: Mapping[str, str]
    path: str | None
    remaining: int | None = None  # fail_next: calls left
    until: float | None = None  # fail_for: monotonic deadline

    def applies(self, path: str, now: float) -> bool:
        if self.path is not None and self.path not in path:
            return False
        if self.remaining is not None:
            return self.remaining > 0
        return self.until is not None and now < self.until


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[_ScriptedFailure] = field(default_factory=list)
    latency: float = 0.0  # seconds before every answer (a network's real round trip)
    hung: dict[str, float] = field(default_factory=dict)  # path fragment -> seconds to hold such requests


class FakeServer:
    """Subclasses add routes in `add_routes` and keep their own records under `self._lock`.

    The fake of network <name> lives in tests/fakes/<name>.py and names its class `FAKE` there; the test
    harness and `apprefer dev --fake-networks` find it by the network's name (tests/fakes/__init__.py).
    `FAKE()` checks the credentials the tests use; `FAKE.for_dev(port)` accepts any. A network with
    token refresh serves its token endpoint at `<base_url>/token`.
    """

    name = "fake"

    @classmethod
    def for_dev(cls, port: int) -> Self:
        """The fake `apprefer dev --fake-networks` serves: any credentials work."""
        return cls(port=port)

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self.port: int | None = None
        self._lock = threading.RLock()
        self._state = _State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready, errors), name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError(f"{self.name} did not start within 10 s")
        if errors:
            self._thread.join()
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name} is not started")
        return f"http://127.0.0.1:{self.port}"

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # handed to start(), which raises it in the caller's thread
            errors.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Port 0 lets the kernel pick a free port: no window in which another process can take it.
        site = web.TCPSite(self._runner, "127.0.0.1", self._requested_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # -- recording and scripted failures -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        recorded = RecordedRequest(
            method=request.method, path=request.path, query=dict(request.query),
            headers=CIMultiDict(request.headers), body=await _parse_body(request), at=time.time(),
        )
        request[RECORDED] = recorded
        with self._lock:
            self._state.requests.append(recorded)
            failure = self._take_failure(request.path)
            held = [seconds for fragment, seconds in self._state.hung.items() if fragment in request.path]
            hold = max([self._state.latency, *held])
        if hold:
            await asyncio.sleep(hold)
        try:
            if failure is not None:
                response: web.StreamResponse = web.json_response(failure.body, status=failure.status,
                                                                 headers=failure.headers)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            recorded.status = exc.status
            raise
        recorded.status = response.status
        return response

    def _take_failure(self, path: str) -> _ScriptedFailure | None:
        now = time.monotonic()
        for failure in self._state.failures:
            if failure.applies(path, now):
                if failure.remaining is not None:
                    failure.remaining -= 1
                return failure
        return None

    def fail_next(self, n: int, status: int, body_json: Any, headers: Mapping[str, str] | None = None,
                  *, path: str | None = None) -> None:
        """The next `n` requests (whose path contains `path`, when given) answer `status` with `body_json`."""
        with self._lock:
            self._state.failures.append(_ScriptedFailure(status, body_json, headers or {}, path, remaining=n))

    def fail_for(self, seconds: float, status: int, body: Any, headers: Mapping[str, str] | None = None,
                 *, path: str | None = None) -> None:
        """Every request (matching `path`) answers `status` with `body` for the next `seconds`: an outage."""
        with self._lock:
            self._state.failures.append(
                _ScriptedFailure(status, body, headers or {}, path, until=time.monotonic() + seconds))

    def set_latency(self, seconds: float) -> None:
        """Every answer from now on comes `seconds` late (recorded on arrival, answered after the wait)."""
        with self._lock:
            self._state.latency = seconds

    def hang(self, path: str, seconds: float = 3600.0) -> None:
        """Requests whose path contains `path` are held `seconds` (an hour: until the client gives up)."""
        with self._lock:
            self._state.hung[path] = seconds

    def unhang(self, path: str) -> None:
        """New requests for `path` are answered again (ones already held stay held)."""
        with self._lock:
            self._state.hung.pop(path, None)

    def reset(self) -> None:
        """Forget recorded requests and scripted failures; subclasses also clear what they recorded."""
        with self._lock:
            self._state = _State()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `condition()` holds, e.g. `fake.wait_for(lambda: len(fake.events) == 3)`."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: condition not met within {timeout} s")
            time.sleep(0.02)


async def _parse_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(await request.post())
    text = await request.text()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class EventRecordingFake(FakeServer):
    """A network that takes events and de-duplicates them on a key of its own (within 48 h for
    Meta and TikTok; a test never spans that, so any repeat of the key counts as a duplicate)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._events: list[dict[str, Any]] = []
        self._test_events: list[dict[str, Any]] = []
        self._unique: dict[tuple[str, str], dict[str, Any]] = {}
        self._duplicates = 0

    def dedupe_key(self, event: dict[str, Any], position: int) -> tuple[str, str]:
        raise NotImplementedError

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._events, self._test_events, self._unique, self._duplicates = [], [], {}, 0

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every accepted event, duplicates included (test events excluded)."""
        with self._lock:
            return list(self._events)

    @property
    def unique_events(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Accepted events de-duplicated on the network's key, first copy kept."""
        with self._lock:
            return dict(self._unique)

    @property
    def duplicates(self) -> int:
        with self._lock:
            return self._duplicates

    @property
    def test_events(self) -> list[dict[str, Any]]:
        """Events sent with `test_event_code`: shown in the network's test tool, never counted as real."""
        with self._lock:
            return list(self._test_events)

    def _record(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._events.append(event)
            key = self.dedupe_key(event, len(self._events))
            if key in self._unique:
                self._duplicates += 1
            else:
                self._unique[key] = event
