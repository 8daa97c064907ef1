"""One aiohttp session per forwarder process, on its own event-loop thread.

Consumer handlers are synchronous; they hand coroutines to this loop (`run`) and wait, so requests
for many apps are in flight at once, bounded by `concurrency`, and connections are pooled and
reused across batches. Every request is bounded (connect and total timeouts). Connection errors
and timeouts come back as `TransportError`, which the forwarder treats as transient.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from shared.forwarding.model import HttpRequest, HttpResponse

T = TypeVar("T")


class TransportError(RuntimeError):
    """No HTTP answer: connection refused or reset, DNS, timeout."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


async def send_async(session: aiohttp.ClientSession, request: HttpRequest,
                     timeout: float | aiohttp.ClientTimeout) -> HttpResponse:
    bounds = timeout if isinstance(timeout, aiohttp.ClientTimeout) else aiohttp.ClientTimeout(total=timeout)
    try:
        async with session.request(
            request.method, request.url, headers=dict(request.headers), json=request.json,
            data=dict(request.form) if request.form is not None else None, timeout=bounds,
        ) as response:
            body = await response.read()
            return HttpResponse(status=response.status, body=body, headers=dict(response.headers))
    except TimeoutError as exc:  # aiohttp's ServerTimeoutError and ConnectionTimeoutError are TimeoutErrors too
        raise TransportError(f"no answer within {bounds.total:g} s (connect {bounds.connect or bounds.total:g} s)",
                             timed_out=True) from exc
    except aiohttp.ClientError as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc


class HttpClient:
    def __init__(self, timeout: float = 10.0, connect_timeout: float = 3.0, concurrency: int = 64) -> None:
        self.timeout = timeout
        self._bounds = aiohttp.ClientTimeout(total=timeout, connect=min(connect_timeout, timeout))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="http-client", daemon=True)
        self._thread.start()
        self._session, self._slots = self.run(self._open(concurrency))

    @staticmethod
    async def _open(concurrency: int) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        # As many pooled connections as requests may be in flight: one slow host must not queue the others.
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
        return aiohttp.ClientSession(connector=connector, json_serialize=_json_dumps), asyncio.Semaphore(concurrency)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs `coroutine` on the client's loop and waits for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def request(self, request: HttpRequest) -> HttpResponse:
        """On the client's loop: one request, waiting for a free slot first."""
        async with self._slots:
            return await send_async(self._session, request, self._bounds)

    def send(self, request: HttpRequest) -> HttpResponse:
        return self.run(self.request(request))

    def close(self) -> None:
        self.run(self._session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=2)


def _json_dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()
