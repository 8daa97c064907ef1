"""The HTTP server of the gateway and the admin service: aiohttp's, with deadlines for slow clients and JSON
answers for what fails before any route. web.run_app has no option for the connection protocol, hence this."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import ContentEncodingError

from shared.metrics import HTTP_REQUESTS
from shared.web import error_response

log = logging.getLogger(__name__)


async def serve(app: web.Application, *, name: str, host: str, port: int, header_timeout: float,
                body_timeout: float) -> None:
    """What web.run_app does, with GuardedRequestHandler serving each connection. SIGINT/SIGTERM: stop
    accepting, finish in-flight requests (10 s at most), then cleanup."""
    runner = web.AppRunner(app, shutdown_timeout=10)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await GuardedSite(runner, host, port, header_timeout=header_timeout, body_timeout=body_timeout).start()
        log.info(f"{name} listening", extra={"host": host, "port": port})
        await stop.wait()
    finally:
        await runner.cleanup()


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol with deadlines for slow clients. aiohttp has none: its keep-alive timer
    spares a connection whose request is half read, and nothing bounds a body's arrival, so 2,000 connections
    that each sent half a request were all still held after 30 s.

    * The head (request line and headers) is due `header_timeout` seconds after the connection opened, or
      after the first byte of a later request on a kept-alive connection. Overdue, the connection is closed:
      there is no request to answer yet.
    * The body is due `body_timeout` seconds after its head. Overdue, request.read() raises
      HTTPRequestTimeout in its handler, which count_requests answers 408; when the answer went out already
      (the handler did not read the body), the connection is closed.

    An idle kept-alive connection is left to keepalive_timeout. This leans on RequestHandler's internals
    (_messages, _request_in_progress, _lingering_time of aiohttp 3.14); tests/integration/test_gateway_edges.py
    fails if an upgrade changes them."""

    def __init__(self, manager: web.Server, *, header_timeout: float, body_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout, self._body_timeout = header_timeout, body_timeout
        self._head_due: asyncio.TimerHandle | None = None
        self._body_due: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None  # the newest request's body, while it may still be arriving

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_due = self._loop.call_later(self._header_timeout, self._head_overdue)

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._head_due, self._body_due):
            if timer is not None:
                timer.cancel()
        self._head_due = self._body_due = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_body = self._body is not None and not self._body.is_eof()
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:  # a head is complete: the parser queued its request
            if self._head_due is not None:
                self._head_due.cancel()
                self._head_due = None
            if self._body_due is not None:
                self._body_due.cancel()  # the body before it is complete, or the parser would not be past it
            _, self._body = self._messages[-1]
            self._body_due = (None if self._body.is_eof()
                              else self._loop.call_later(self._body_timeout, self._body_overdue))
        elif data and not in_body and self._head_due is None:
            self._head_due = self._loop.call_later(self._header_timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        self._head_due = None
        if self._request_in_progress:  # a pipelined head waits for the request before it: not its fault
            self._head_due = self._loop.call_later(self._header_timeout, self._head_overdue)
            return
        self.force_close()

    def _body_overdue(self) -> None:
        self._body_due = None
        if self._body is None or self._body.is_eof():
            return
        if self._request_in_progress:
            self._body.set_exception(web.HTTPRequestTimeout())
        else:
            self.force_close()

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        if request.content.exception() is not None:
            # The body failed (not in its Content-Encoding, or overdue): the rest will never parse, and aiohttp's
            # lingering read of it would only raise again (logged as an unhandled exception). Close after the answer.
            self._lingering_time = 0.0
        return await super().finish_response(request, resp, start_time)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's own answers, to requests it cannot parse (no route saw them): counted, and the one a
        client can mean well with, a Content-Encoding aiohttp cannot decode (br, zstd), answered in JSON."""
        HTTP_REQUESTS.labels("unparsed", str(status)).inc()
        if isinstance(exc, ContentEncodingError):
            refused = error_response(400, "unsupported_encoding",
                                     "Content-Encoding must be gzip, deflate or identity", "body")
            refused.force_close()
            return refused
        return super().handle_error(request, status, exc, message)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections are GuardedRequestHandlers: web.TCPSite hands the runner's Server, aiohttp's
    protocol factory, to create_server. Registered with the runner, whose cleanup() stops it."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, header_timeout: float,
                 body_timeout: float) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self._timeouts = {"header_timeout": header_timeout, "body_timeout": body_timeout}
        self._app_runner = runner

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        manager = self._app_runner.server
        assert manager is not None, "runner.setup() first"
        loop = asyncio.get_running_loop()

        def connection() -> GuardedRequestHandler:
            # keepalive_timeout: web.run_app's default (aiohttp's own is an hour).
            return GuardedRequestHandler(manager, loop=loop, keepalive_timeout=75.0, access_log=None,
                                         **self._timeouts)

        self._server = await loop.create_server(connection, self._host, self._port, backlog=self._backlog)
