"""Meta Conversions API (app events), Graph v26.0, as described in docs/networks.md."""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection
from typing import Any, Self

from aiohttp import web

from tests.fakes.base import RECORDED, EventRecordingFake

GRAPH_VERSION = "v26.0"
MAX_EVENTS = 1000
MAX_EVENT_AGE = 7 * 24 * 3600
FUTURE_SKEW = 60  # clock skew tolerated before an event counts as "in the future"
TRANSIENT_CODES = {1, 2, 4, 17, 32, 341, 368, 613, 80004}
RATE_LIMIT_MESSAGES = {
    17: "(#17) User request limit reached",
    80004: "(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
}


class FakeMeta(EventRecordingFake):
    """`POST /v26.0/{dataset_id}/events` and `GET /v26.0/{dataset_id}` with Meta's error shapes.

    `tokens`: access tokens that work; `dataset_ids`: datasets that exist (None: any id exists).
    """

    name = "fake-meta"

    @classmethod
    def for_dev(cls, port: int) -> Self:
        return cls(tokens=None, port=port)

    def __init__(self, tokens: Collection[str] | None = ("meta-token",), dataset_ids: Collection[str] | None = None,
                 port: int = 0) -> None:
        super().__init__(port)
        self.tokens = None if tokens is None else set(tokens)  # None: any token works (`apprefer dev --fake-networks`)
        self.dataset_ids = None if dataset_ids is None else set(dataset_ids)
        self._expired_tokens: set[str] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"/{GRAPH_VERSION}/{{dataset_id}}/events", self._post_events)
        app.router.add_get(f"/{GRAPH_VERSION}/{{dataset_id}}", self._get_dataset)

    # -- test controls -----------------------------------------------------------------------------------------

    def expire_token(self, token: str) -> None:
        """The token stops working with code 190 / subcode 463 ("Session has expired"); unknown tokens get 190
        with no subcode ("Cannot parse access token")."""
        with self._lock:
            if self.tokens is not None:
                self.tokens.discard(token)
            self._expired_tokens.add(token)

    def rate_limit_next(self, n: int, code: int = 17) -> None:
        """The next `n` calls answer Meta's throttling error: code 17 (user limit) or 80004 (ad account)."""
        self.fail_next(n, 400, self.error_body(code, RATE_LIMIT_MESSAGES[code], is_transient=True))

    @staticmethod
    def error_body(code: int, message: str, subcode: int | None = None, *, is_transient: bool | None = None,
                   error_type: str = "OAuthException", **extra: Any) -> dict[str, Any]:
        """Meta's error envelope; `is_transient` defaults to what Meta sends for that code."""
        error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        error["is_transient"] = code in TRANSIENT_CODES if is_transient is None else is_transient
        error.update(extra)
        error["fbtrace_id"] = _trace_id()
        return {"error": error}

    # -- handlers ----------------------------------------------------------------------------------------------

    async def _post_events(self, request: web.Request) -> web.Response:
        body = request[RECORDED].body
        token = request.query.get("access_token") or (body.get("access_token") if isinstance(body, dict) else None)
        refusal = self._check_token(token) or self._check_dataset(request.match_info["dataset_id"], "post")
        if refusal is not None:
            return refusal
        if not isinstance(body, dict):
            return _invalid("(#100) The request body must be a JSON object")
        problem = _validate_events(body.get("data"), int(time.time()))
        if problem is not None:
            return problem
        events: list[dict[str, Any]] = body["data"]
        with self._lock:
            if body.get("test_event_code"):
                self._test_events.extend(events)
            else:
                self._record(events)
        return web.json_response({"events_received": len(events), "messages": [], "fbtrace_id": _trace_id()})

    async def _get_dataset(self, request: web.Request) -> web.Response:
        dataset_id = request.match_info["dataset_id"]
        refusal = self._check_token(request.query.get("access_token")) or self._check_dataset(dataset_id, "get")
        if refusal is not None:
            return refusal
        return web.json_response({"id": dataset_id, "name": f"Fake dataset {dataset_id}"})

    def dedupe_key(self, event: dict[str, Any], position: int) -> tuple[str, str]:
        # (event_name, event_id), as Meta does; an event without event_id cannot be de-duplicated.
        event_id = event.get("event_id")
        return event["event_name"], str(event_id) if event_id else f"<no event_id #{position}>"

    def _check_token(self, token: str | None) -> web.Response | None:
        with self._lock:
            if token in self._expired_tokens:
                expired = True
            elif (self.tokens is None and token) or (self.tokens is not None and token in self.tokens):
                return None
            else:
                expired = False
        # Graph answers token errors with HTTP 400 and a WWW-Authenticate header.
        if expired:
            message = "Error validating access token: Session has expired."
            body = self.error_body(190, message, 463)
        else:
            message = "Invalid OAuth access token - Cannot parse access token"
            body = self.error_body(190, message)
        headers = {"WWW-Authenticate": f'OAuth "Facebook Platform" "invalid_token" "{message}"'}
        return web.json_response(body, status=400, headers=headers)

    def _check_dataset(self, dataset_id: str, verb: str) -> web.Response | None:
        if self.dataset_ids is None or dataset_id in self.dataset_ids:
            return None
        message = (f"Unsupported {verb} request. Object with ID '{dataset_id}' does not exist, cannot be loaded due "
                   "to missing permissions, or does not support this operation.")
        return web.json_response(self.error_body(100, message, 33, error_type="GraphMethodException"), status=400)


def _validate_events(data: Any, now: int) -> web.Response | None:
    """The whole request fails on the first bad event, as Meta does (one stale event rejects the batch)."""
    if not isinstance(data, list) or not data:
        return _invalid("(#100) The parameter data is required and must be a non-empty array")
    if len(data) > MAX_EVENTS:
        return _invalid(f"(#100) data: a request holds at most {MAX_EVENTS} events, got {len(data)}")
    for i, event in enumerate(data):
        problem = _event_problem(event)
        if problem is not None:
            return _invalid(f"(#100) data[{i}]: {problem}")
        event_time = event["event_time"]
        if event_time < now - MAX_EVENT_AGE:
            return _invalid("Invalid parameter", 2804003, error_user_title="Event Timestamp Too Old",
                            error_user_msg=f"data[{i}]: the timestamp for this event is too far in the past. Events "
                            "need to be sent from your server within 7 days of when they occurred.")
        if event_time > now + FUTURE_SKEW:
            # The subcode for future timestamps is not confirmed from a primary source; 2804004 stands in.
            return _invalid("Invalid parameter", 2804004, error_user_title="Event Timestamp In The Future",
                            error_user_msg=f"data[{i}]: the timestamp for this event is in the future.")
    return None


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "each event must be an object"
    if not isinstance(event.get("event_name"), str) or not event["event_name"]:
        return "event_name is required"
    event_time = event.get("event_time")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        return "event_time must be an integer Unix timestamp in seconds"
    if event.get("action_source") != "app":
        return "action_source must be 'app' for app events"
    if not isinstance(event.get("user_data"), dict):
        return "user_data is required"
    app_data = event.get("app_data")
    if not isinstance(app_data, dict):
        return "app_data is required for app events"
    for flag in ("advertiser_tracking_enabled", "application_tracking_enabled"):
        if app_data.get(flag) not in (0, 1):  # bools compare equal to 0/1
            return f"app_data.{flag} is required (0 or 1)"
    extinfo = app_data.get("extinfo")
    if not isinstance(extinfo, list) or len(extinfo) != 16 or not all(isinstance(v, str) for v in extinfo):
        return "app_data.extinfo must be an array of 16 strings"
    if extinfo[0] not in ("a2", "i2"):
        return "app_data.extinfo[0] must be 'a2' or 'i2'"
    return None


def _invalid(message: str, subcode: int | None = None, **extra: Any) -> web.Response:
    return web.json_response(FakeMeta.error_body(100, message, subcode, **extra), status=400)


def _trace_id() -> str:
    return secrets.token_urlsafe(8)


FAKE = FakeMeta
