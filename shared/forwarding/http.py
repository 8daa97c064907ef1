"""One aiohttp session per forwarder process, on its own event-loop thread.

Consumer handlers are synchronous; they hand requests to this loop and wait, so connections are
pooled and reused across batches. Connection errors and timeouts come back as `TransportError`,
which the forwarder treats as transient.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp

from shared.forwarding.model import HttpRequest, HttpResponse

T = TypeVar("T")


class TransportError(RuntimeError):
    """No HTTP answer: connection refused or reset, DNS, timeout."""


async def send_async(session: aiohttp.ClientSession, request: HttpRequest, timeout: float) -> HttpResponse:
    try:
        async with session.request(
            request.method, request.url, headers=dict(request.headers), json=request.json,
            data=dict(request.form) if request.form is not None else None,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.read()
            return HttpResponse(status=response.status, body=body, headers=dict(response.headers))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc


class HttpClient:
    def __init__(self, timeout: float = 15.0, max_connections: int = 32) -> None:
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-client", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._open(max_connections))

    async def _open(self, max_connections: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max_connections),
                                     json_serialize=_json_dumps)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def send(self, request: HttpRequest) -> HttpResponse:
        return self._run(send_async(self._session, request, self._timeout))

    def send_all(self, requests: Sequence[HttpRequest]) -> list[HttpResponse | TransportError]:
        """Concurrently; each answer or its TransportError, in order."""

        async def gather() -> list[HttpResponse | TransportError]:
            results = await asyncio.gather(
                *(send_async(self._session, r, self._timeout) for r in requests), return_exceptions=True
            )
            out: list[HttpResponse | TransportError] = []
            for result in results:
                if isinstance(result, HttpResponse | TransportError):
                    out.append(result)
                elif isinstance(result, BaseException):
                    raise result
            return out

        return self._run(gather())

    def close(self) -> None:
        self._run(self._session.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)


def _json_dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()
