"""What every admin route shares: the admin token check, the answers for the errors a route may raise, the
admin events record of every mutating request, and the context a route module is given (the store, the
gateway's public URL, Test Connection, dead letters)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError

from services.admin.integration_settings import IntegrationInvalid, integration_names
from services.admin.store import AdminStore
from shared.crypto import secrets_equal, token_id
from shared.errors import NotFound
from shared.forwarding.model import ConnectionCheck, Integration
from shared.kafka.dlq import DlqFilter
from shared.web import error_response, storable_text

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ConnectionTester = Callable[[Integration], Awaitable[ConnectionCheck]]
# (network or None, filter, limit) -> dead letters as JSON-ready summaries (blocking: run in a thread)
DeadLetterLister = Callable[[str | None, DlqFilter, int], list[dict[str, Any]]]
T = TypeVar("T")

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin/v1/"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_VERBS = {"POST": "create", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}


class Body(BaseModel):
    """A request body: unknown fields refused, text trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


@dataclass(frozen=True, slots=True)
class AdminContext:
    store: AdminStore
    admin_token: str | None
    public_base_url: str  # the gateway's, as devices reach it: tracking links start with it
    connection_tester: ConnectionTester | None = None
    dead_letters: DeadLetterLister | None = None

    def guarded(self, handler: Handler) -> Handler:
        """The admin token (constant-time compare) and the answers to what a route raises."""

        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            # Only "Bearer <token>" (the scheme is case-insensitive, RFC 9110): a bare token is refused.
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            given = given.strip()
            if self.admin_token is None:
                return error_response(503, "admin_disabled", "APPREFER_ADMIN_TOKEN is not set")
            if (scheme.lower() != "bearer" or not given or not storable_text(given)
                    or not secrets_equal(given, self.admin_token)):
                # Not an admin event: nothing was done, and an unauthenticated flood must not write rows.
                return error_response(401, "unauthorized", "missing or wrong admin token")
            try:
                response = await answer(request)
            except web.HTTPException as exc:  # e.g. model_body's 400
                await self._record(request, exc.status, None)
                raise
            await self._record(request, response.status, response)
            return response

        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except NotFound as exc:
                return error_response(404, "not_found", str(exc))
            except IntegrationInvalid as exc:
                return error_response(400, "invalid_integration", exc.message, exc.field)
            except DataError:
                # e.g. a NUL character or an over-long value that PostgreSQL refuses: bad input, not our fault.
                return error_response(400, "invalid_request", "a value cannot be stored (NUL character or too long)")
            # A database that refuses work for now (shared.db.session.database_unavailable) is answered 503
            # + Retry-After by the app's middleware, for every route alike.

        return wrapper

    async def _record(self, request: web.Request, status: int, response: web.StreamResponse | None) -> None:
        """An admin event for a mutating request answered below 500 (what fails is logged, not recorded, and
        what escapes as a 500 or 503 never reaches here): the token's id, the action derived from the matched
        route, the path with its ids (no query string), the app, the status. Never the body. Recorded after
        the route's own transaction: a failure to record is logged and the answer stands (the change is made)."""
        if request.method not in MUTATING or status >= 500 or self.admin_token is None:
            return
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else request.path
        if not canonical.startswith(ADMIN_PREFIX):
            return
        app_id = request.match_info.get("app_id") or _created_app_id(response)
        if app_id is not None and (len(app_id) > 40 or not storable_text(app_id)):
            app_id = None  # a made-up id (answered 404): the path still shows it
        try:
            await self.call(lambda: self.store.record_admin_event(
                token_id=token_id(self.admin_token or ""), action=admin_action(canonical, request.method),
                method=request.method, path=request.rel_url.raw_path, app_id=app_id, status=status))
        except Exception:
            log.exception("admin event not recorded", extra={"route": canonical, "method": request.method,
                                                              "status": status})

    @staticmethod
    async def call(fn: Callable[..., T], *args: Any) -> T:
        """A blocking store call, in a thread: the event loop keeps serving."""
        return await asyncio.to_thread(fn, *args)

    @staticmethod
    def network_of(request: web.Request) -> str:
        network = request.match_info["network"]
        known = integration_names()
        if network not in known:
            raise NotFound(f"unknown network {network}; known: {', '.join(known)}")
        return network


def admin_action(canonical: str, method: str) -> str:
    """The action an admin route does, from its canonical path and method: "<resource>.<verb>".

    A last segment that is a word, not a plural, after a parameter or a plural is the verb
    (POST .../keys/rotate: "key.rotate"; POST .../integrations/{network}/test: "integration.test";
    POST /apps/{app_id}/erasure: "app.erasure"). Otherwise the verb is the method's (POST create, PUT put,
    PATCH patch, DELETE delete) and the resource the words before the last parameter, or the last words,
    singular (POST /apps: "app.create"; PATCH /apps/{app_id}: "app.patch"; DELETE .../keys/{key_id}:
    "key.delete"; PUT .../integrations/{network}: "integration.put"; PUT .../skan/schema: "skan_schema.put").
    """
    segments = [s for s in canonical.removeprefix(ADMIN_PREFIX).split("/") if s]
    if not segments:
        return f"admin.{_VERBS.get(method, method.lower())}"

    def is_param(segment: str) -> bool:
        return segment.startswith("{")

    def plural(segment: str) -> bool:
        return segment.endswith("s") and not segment.endswith("ss")

    last = segments[-1]
    if (len(segments) > 1 and not is_param(last) and not plural(last)
            and (is_param(segments[-2]) or plural(segments[-2]))):
        resource = next(s for s in reversed(segments[:-1]) if not is_param(s))
        return f"{_singular(resource)}.{last.replace('-', '_')}"
    end = len(segments)
    while end and is_param(segments[end - 1]):
        end -= 1
    start = end
    while start and not is_param(segments[start - 1]):
        start -= 1
    return f"{_singular('_'.join(segments[start:end]) or 'admin')}.{_VERBS.get(method, method.lower())}"


def _singular(words: str) -> str:
    words = words.replace("-", "_")
    return words[:-1] if words.endswith("s") and not words.endswith("ss") else words


def _created_app_id(response: web.StreamResponse | None) -> str | None:
    """The app id a JSON answer names (POST /apps: the app just made, which no path names yet)."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    if not 200 <= response.status < 300 or not isinstance(response.body, bytes):
        return None
    try:
        answer = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
    app_id = answer.get("app_id") if isinstance(answer, dict) else None
    return app_id if isinstance(app_id, str) else None
