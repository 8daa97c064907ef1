"""TikTok Events API 2.0 (app events). Errors arrive as HTTP 200 with a non-zero `code`, as TikTok sends them."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Any, Self

from aiohttp import web

from tests.fakes.base import RECORDED, EventRecordingFake

TRACK_PATH = "/open_api/v1.3/event/track/"
MAX_EVENTS = 1000


class FakeTikTok(EventRecordingFake):
    """`POST /open_api/v1.3/event/track/` with the `Access-Token` header.

    `tokens`: access tokens that work; `event_source_ids`: TikTok App IDs the token may send for (None: any).
    """

    name = "fake-tiktok"

    @classmethod
    def for_dev(cls, port: int) -> Self:
        return cls(tokens=None, port=port)

    def __init__(self, tokens: Collection[str] | None = ("tiktok-token",),
                 event_source_ids: Collection[str] | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.tokens = None if tokens is None else set(tokens)  # None: any token works (`apprefer dev --fake-networks`)
        self.event_source_ids = None if event_source_ids is None else set(event_source_ids)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(TRACK_PATH, self._track)

    # -- test controls -----------------------------------------------------------------------------------------

    def rate_limit_next(self, n: int) -> None:
        """The next `n` calls answer HTTP 200 with code 40100 (too many requests)."""
        self.fail_next(n, 200, self.answer(40100, "Too many requests. Please retry in some time."))

    @staticmethod
    def answer(code: int, message: str, data: Any = None) -> dict[str, Any]:
        """TikTok's envelope, for success and errors alike."""
        return {"code": code, "message": message, "request_id": secrets.token_hex(12),
                "data": {} if data is None else data}

    # -- handler -----------------------------------------------------------------------------------------------

    async def _track(self, request: web.Request) -> web.Response:
        with self._lock:
            token = request.headers.get("Access-Token")
            token_ok = bool(token) if self.tokens is None else token in self.tokens
        if not token_ok:
            return _reply(40105, "Access token is incorrect or has been revoked.")
        body = request[RECORDED].body
        problem = _body_problem(body)
        if problem is not None:
            return _reply(40002, problem)
        if self.event_source_ids is not None and body["event_source_id"] not in self.event_source_ids:
            return _reply(40001, f"No permission to operate event source id {body['event_source_id']}.")
        events: list[dict[str, Any]] = body["data"]
        with self._lock:
            if body.get("test_event_code"):
                self._test_events.extend(events)
            else:
                self._record(events)
        return _reply(0, "OK")

    def dedupe_key(self, event: dict[str, Any], position: int) -> tuple[str, str]:
        return event["event"], str(event["event_id"])  # (event, event_id), as TikTok does


def _body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if body.get("event_source") != "app":
        return "event_source: must be 'app' for app events."
    if not isinstance(body.get("event_source_id"), str) or not body["event_source_id"]:
        return "event_source_id: Missing data for required field."
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return "data: Missing data for required field."
    if len(data) > MAX_EVENTS:
        return f"data: Length must be between 1 and {MAX_EVENTS}."
    for i, event in enumerate(data):
        if not isinstance(event, dict):
            return f"data.{i}: must be an object."
        for field_name in ("event", "event_id"):
            if not isinstance(event.get(field_name), str) or not event[field_name]:
                return f"data.{i}.{field_name}: Missing data for required field."
        event_time = event.get("event_time")
        if not isinstance(event_time, int) or isinstance(event_time, bool):
            return f"data.{i}.event_time: must be an integer Unix timestamp in seconds."
    return None


def _reply(code: int, message: str) -> web.Response:
    return web.json_response(FakeTikTok.answer(code, message))  # always HTTP 200: the body carries the outcome


FAKE = FakeTikTok
