"""Snapchat Conversions API v3 (app events), as described in docs/networks.md.

Where Snap's documentation leaves a detail open the fake picks one and says so: an HTTP error's body uses the
same `{"status", "reason", "request_id"}` envelope as a 200, and one stale event makes the whole request
INVALID (nothing recorded), as Meta does.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Collection
from typing import Any, Self

from aiohttp import web

from tests.fakes.base import RECORDED, EventRecordingFake

API_VERSION = "v3"
MAX_EVENTS = 2000
MAX_EVENT_AGE = 37 * 24 * 3600
HASHED_KEYS = ("em", "ph", "fn", "ln", "external_id")
TOO_OLD = "event_time is more than 37 days in the past"
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class FakeSnapchat(EventRecordingFake):
    """`POST /v3/{snap_app_id}/events` and `POST /v3/{snap_app_id}/events/validate`, token in `access_token`.

    `tokens`: access tokens that work (None: any non-empty token); `snap_app_ids`: apps that exist (None: any).
    Accepted events are de-duplicated on (snap_app_id, event_id); validated events go to `test_events` only.
    """

    name = "fake-snapchat"

    @classmethod
    def for_dev(cls, port: int) -> Self:
        return cls(tokens=None, port=port)

    def __init__(self, tokens: Collection[str] | None = ("snap-token",), snap_app_ids: Collection[str] | None = None,
                 port: int = 0) -> None:
        super().__init__(port)
        self.tokens = None if tokens is None else set(tokens)  # None: any token works (`apprefer dev --fake-networks`)
        self.snap_app_ids = None if snap_app_ids is None else set(snap_app_ids)
        self._recording_app = ""  # the app of the events `_record` is given, for `dedupe_key`

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"/{API_VERSION}/{{snap_app_id}}/events", self._post_events)
        app.router.add_post(f"/{API_VERSION}/{{snap_app_id}}/events/validate", self._post_validate)

    # -- test controls -----------------------------------------------------------------------------------------

    @staticmethod
    def answer(status: str, reason: str = "", **extra: Any) -> dict[str, Any]:
        """Snap's envelope, for success and errors alike (`status` VALID, INVALID or FAILED)."""
        return {"status": status, "reason": reason, "request_id": secrets.token_hex(8), **extra}

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        """The next `n` calls answer HTTP 429 with a Retry-After header."""
        self.fail_next(n, 429, self.answer("FAILED", "Too many requests"), {"Retry-After": str(retry_after)})

    # -- handlers ----------------------------------------------------------------------------------------------

    async def _post_events(self, request: web.Request) -> web.Response:
        app_id = request.match_info["snap_app_id"]
        refusal = self._refusal(request, app_id)
        if refusal is not None:
            return refusal
        events: list[dict[str, Any]] = request[RECORDED].body["data"]
        now = int(time.time())
        stale = [i for i, event in enumerate(events) if _too_old(event, now)]
        if stale:
            return web.json_response(self.answer("INVALID", f"data[{stale[0]}]: {TOO_OLD}"))
        with self._lock:
            self._recording_app = app_id
            self._record(events)
        return web.json_response(self.answer("VALID"))

    async def _post_validate(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request, request.match_info["snap_app_id"])
        if refusal is not None:
            return refusal
        events: list[dict[str, Any]] = request[RECORDED].body["data"]
        now = int(time.time())
        results = [{"index": i, **({"status": "INVALID", "reason": TOO_OLD} if _too_old(event, now)
                                   else {"status": "VALID", "reason": ""})} for i, event in enumerate(events)]
        if any(result["status"] == "INVALID" for result in results):
            return web.json_response(self.answer("INVALID", "Some events are not valid", events=results))
        with self._lock:
            self._test_events.extend(events)
        return web.json_response(self.answer("VALID", events=results))

    def dedupe_key(self, event: dict[str, Any], position: int) -> tuple[str, str]:
        # Snap dedupes on event_id within the app (pixel) the events are sent to.
        event_id = event.get("event_id")
        return self._recording_app, str(event_id) if event_id else f"<no event_id #{position}>"

    def _refusal(self, request: web.Request, app_id: str) -> web.Response | None:
        """The token, the app and the body, checked in that order; None when all are fine."""
        token = request.query.get("access_token")
        with self._lock:
            token_ok = bool(token) if self.tokens is None else token in self.tokens
            app_ok = self.snap_app_ids is None or app_id in self.snap_app_ids
        if not token_ok:
            reason = "Missing access token" if not token else "Invalid access token"
            return web.json_response(self.answer("FAILED", reason), status=401)
        if not app_ok:
            return web.json_response(self.answer("INVALID", f"Snap App ID {app_id} not found"), status=400)
        problem = _body_problem(request[RECORDED].body)
        if problem is not None:
            return web.json_response(self.answer("INVALID", problem), status=400)
        return None


def _body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return "data: a non-empty array of events is required"
    if len(data) > MAX_EVENTS:
        return f"data: a request holds at most {MAX_EVENTS} events, got {len(data)}"
    for i, event in enumerate(data):
        problem = _event_problem(event)
        if problem is not None:
            return f"data[{i}]: {problem}"
    return None


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "each event must be an object"
    for name in ("event_name", "event_id"):
        if not isinstance(event.get(name), str) or not event[name]:
            return f"{name} is required"
    event_time = event.get("event_time")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        return "event_time must be an integer Unix timestamp in seconds"
    if event.get("action_source") != "MOBILE_APP":
        return "action_source must be MOBILE_APP for app events"
    user_data = event.get("user_data")
    if not isinstance(user_data, dict):
        return "user_data is required"
    for key in HASHED_KEYS:
        if key in user_data:
            values = user_data[key] if isinstance(user_data[key], list) else [user_data[key]]
            if not all(isinstance(v, str) and _SHA256_HEX.fullmatch(v) for v in values):
                return f"user_data.{key} must be SHA-256 hashed (64 hex characters)"
    app_data = event.get("app_data")
    if not isinstance(app_data, dict):
        return "app_data is required for app events"
    extinfo = app_data.get("extinfo")
    if not isinstance(extinfo, list) or len(extinfo) != 16 or not all(isinstance(v, str) for v in extinfo):
        return "app_data.extinfo must be an array of 16 strings"
    return None


def _too_old(event: dict[str, Any], now: int) -> bool:
    return bool(event["event_time"] < now - MAX_EVENT_AGE)


FAKE = FakeSnapchat
