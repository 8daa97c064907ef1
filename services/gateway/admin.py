"""Admin API under /admin/v1: apps, keys, links, integrations, attribution look-up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import DataError

from services.dlq.cli import epoch_ms
from services.gateway.event_input import (
    DEFAULT_MAX_REVENUE_AMOUNT,
    MAX_REVENUE_BOUND,
    check_json_depth,
)
from services.gateway.integration_settings import IntegrationInvalid, described, integration_names
from services.gateway.store import GatewayStore, NotFound
from services.privacy.erasure import hash_identifiers
from shared.crypto import secrets_equal
from shared.errors import InputError
from shared.forwarding.model import ConnectionCheck, Integration
from shared.kafka.dlq import DlqFilter
from shared.networks.registry import registry


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AppIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    platform: Literal["ios", "android"]
    store_url: str | None = Field(None, max_length=2000)
    bundle_id: str | None = Field(None, max_length=200)
    apple_app_id: str | None = Field(None, pattern=r"^\d{1,20}$")
    lookback_days: int = Field(7, ge=1, le=90)
    fingerprint_window_hours: int = Field(24, ge=1, le=168)
    reattribution_days: int = Field(90, ge=1, le=365)
    # strict: "5000000" and true are not bounds
    max_revenue_amount: float = Field(DEFAULT_MAX_REVENUE_AMOUNT, gt=0, le=MAX_REVENUE_BOUND, strict=True)


class KeyIn(_Body):
    mode: Literal["live", "test"]


class ErasureIn(_Body):
    # Hashed as the gateway hashes `user`, which takes values as sent (an external_id is not trimmed).
    model_config = ConfigDict(str_strip_whitespace=False)

    device_id: str | None = Field(None, max_length=100)
    external_id: str | None = Field(None, max_length=1000)
    email: str | None = Field(None, max_length=1000)
    phone: str | None = Field(None, max_length=100)
    dry_run: bool = Field(False, strict=True)


class LinkIn(_Body):
    network: str | None = Field(None, max_length=40)
    campaign: str | None = Field(None, max_length=200)
    store_url: str | None = Field(None, max_length=2000)


class IntegrationIn(_Body):
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any] | None = None
    event_map: dict[str, Any] = Field(default_factory=dict)


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def storable_text(value: str) -> bool:
    """False for text no key, id or secret can contain: a NUL (PostgreSQL refuses it) or a lone surrogate
    (aiohttp's decoding of a header or path that is not UTF-8), which would fail deep in a query or a hash."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def error_response(status: int, error: str, message: str, field: str | None = None) -> web.Response:
    payload = {"error": error, "message": message}
    if field:
        payload["field"] = field
    return json_response(payload, status)


async def json_object_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the 400 to answer (not JSON, not an object, nested too deep)."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error_response(400, "invalid_json", "body is not valid JSON", "body")
    if not isinstance(body, dict):
        return error_response(400, "invalid_request", "must be a JSON object", "body")
    try:
        check_json_depth(body)
    except InputError as exc:
        return json_response(exc.as_json(), 400)
    return body


async def _body(request: web.Request, model: type[_Body]) -> Any:
    try:
        raw = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(
            body=orjson.dumps({"error": "invalid_json", "message": "body is not JSON"}),
            content_type="application/json",
        ) from None
    try:
        check_json_depth(raw)
    except InputError as exc:
        raise web.HTTPBadRequest(body=orjson.dumps(exc.as_json()), content_type="application/json") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise web.HTTPBadRequest(
            body=orjson.dumps({"error": "invalid_request", "field": field, "message": first["msg"]}),
            content_type="application/json",
        ) from None


ConnectionTester = Callable[[Integration], Awaitable[ConnectionCheck]]
# (network or None, filter, limit) -> dead letters as JSON-ready summaries (blocking: run in a thread)
DeadLetterLister = Callable[[str | None, DlqFilter, int], list[dict[str, Any]]]


def admin_routes(store: GatewayStore, admin_token: str | None, public_base_url: str,
                 connection_tester: ConnectionTester | None = None,
                 dead_letters: DeadLetterLister | None = None) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def guarded(
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            # Only "Bearer <token>" (the scheme is case-insensitive, RFC 9110): a bare token is refused.
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            given = given.strip()
            if admin_token is None:
                return error_response(503, "admin_disabled", "APPREFER_ADMIN_TOKEN is not set")
            if (scheme.lower() != "bearer" or not given or not storable_text(given)
                    or not secrets_equal(given, admin_token)):
                return error_response(401, "unauthorized", "missing or wrong admin token")
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

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def network_of(request: web.Request) -> str:
        network = request.match_info["network"]
        known = integration_names()
        if network not in known:
            raise NotFound(f"unknown network {network}; known: {', '.join(known)}")
        return network

    @routes.get("/admin/v1/networks")
    @guarded
    async def networks(request: web.Request) -> web.StreamResponse:
        return json_response({"networks": described()})

    @routes.post("/admin/v1/apps")
    @guarded
    async def create_app(request: web.Request) -> web.StreamResponse:
        body = await _body(request, AppIn)
        return json_response(await call(store.create_app, body.model_dump()), 201)

    @routes.get("/admin/v1/apps")
    @guarded
    async def list_apps(request: web.Request) -> web.StreamResponse:
        return json_response({"apps": await call(store.list_apps)})

    @routes.get("/admin/v1/apps/{app_id}")
    @guarded
    async def get_app(request: web.Request) -> web.StreamResponse:
        return json_response(await call(store.get_app, request.match_info["app_id"]))

    @routes.post("/admin/v1/apps/{app_id}/keys")
    @guarded
    async def create_key(request: web.Request) -> web.StreamResponse:
        body = await _body(request, KeyIn)
        return json_response(await call(store.create_key, request.match_info["app_id"], body.mode), 201)

    @routes.post("/admin/v1/apps/{app_id}/links")
    @guarded
    async def create_link(request: web.Request) -> web.StreamResponse:
        body = await _body(request, LinkIn)
        created = await call(store.create_link, request.match_info["app_id"], body.model_dump(), public_base_url)
        return json_response(created, 201)

    @routes.get("/admin/v1/apps/{app_id}/integrations")
    @guarded
    async def list_integrations(request: web.Request) -> web.StreamResponse:
        return json_response({"integrations": await call(store.list_integrations, request.match_info["app_id"])})

    @routes.put("/admin/v1/apps/{app_id}/integrations/{network}")
    @guarded
    async def put_integration(request: web.Request) -> web.StreamResponse:
        body = await _body(request, IntegrationIn)
        fields = body.model_dump(exclude_unset=True)
        stored = await call(store.put_integration, request.match_info["app_id"], network_of(request), fields)
        return json_response(stored)

    @routes.get("/admin/v1/apps/{app_id}/integrations/{network}")
    @guarded
    async def get_integration(request: web.Request) -> web.StreamResponse:
        return json_response(await call(store.get_integration, request.match_info["app_id"], network_of(request)))

    @routes.post("/admin/v1/apps/{app_id}/integrations/{network}/test")
    @guarded
    async def test_integration(request: web.Request) -> web.StreamResponse:
        integration = await call(store.integration_config, request.match_info["app_id"], network_of(request))
        if connection_tester is None:
            return error_response(503, "unavailable", "connection tests are not configured")
        check = await connection_tester(integration)
        return json_response({"ok": check.ok, "detail": check.detail})

    @routes.put("/admin/v1/apps/{app_id}/skan/schema")
    @guarded
    async def put_skan_schema(request: web.Request) -> web.StreamResponse:
        body = await json_object_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            return json_response(await call(store.put_skan_schema, request.match_info["app_id"], body))
        except InputError as exc:  # the schema's own (decode.parse_schema): the message names the field too
            return error_response(400, "invalid_schema", str(exc), exc.field)
        except OverflowError:  # valid_from like 0001-01-01T00:00:00+14:00: outside datetime's range in UTC
            return error_response(400, "invalid_schema", "valid_from: is out of range", "valid_from")

    @routes.get("/admin/v1/skan/postbacks/{transaction_id}")
    @guarded
    async def skan_postback(request: web.Request) -> web.StreamResponse:
        return json_response(await call(store.skan_postbacks, request.match_info["transaction_id"]))

    @routes.get("/admin/v1/dlq")
    @guarded
    async def dead_letter_list(request: web.Request) -> web.StreamResponse:
        if dead_letters is None:
            return error_response(503, "unavailable", "dead-letter listing is not configured")
        network = request.query.get("network") or None
        if network is not None and network not in registry().names:
            return error_response(400, "invalid_request", f"unknown network {network}", "network")
        try:
            letter_filter = DlqFilter(
                app_id=request.query.get("app_id") or None, event_id=request.query.get("event_id") or None,
                error_contains=request.query.get("error") or None,
                since_ms=epoch_ms(request.query.get("since")), until_ms=epoch_ms(request.query.get("until")))
            limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
        except ValueError as exc:
            return error_response(400, "invalid_request", f"bad filter: {exc}")
        found = await call(dead_letters, network, letter_filter, limit)
        return json_response({"dead_letters": found})

    @routes.get("/admin/v1/audit")
    @guarded
    async def audit(request: web.Request) -> web.StreamResponse:
        filters = {k: request.query.get(k, "") for k in ("app_id", "event_id", "network", "status")}
        try:
            limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
        except ValueError:
            return error_response(400, "invalid_request", "limit must be an integer", "limit")
        return json_response({"records": await call(store.audit_records, filters, limit)})

    @routes.get("/admin/v1/apps/{app_id}/attribution")
    @guarded
    async def attribution(request: web.Request) -> web.StreamResponse:
        device_id = request.query.get("device_id", "").strip()
        if not device_id:
            return error_response(400, "invalid_request", "device_id is required", "device_id")
        sandbox = request.query.get("sandbox", "false").lower() in ("1", "true", "yes")
        return json_response(await call(store.attribution, request.match_info["app_id"], device_id, sandbox))

    @routes.post("/admin/v1/apps/{app_id}/erasure")
    @guarded
    async def erasure(request: web.Request) -> web.StreamResponse:
        body = await _body(request, ErasureIn)
        try:
            identifiers = hash_identifiers(device_id=body.device_id, external_id=body.external_id,
                                           email=body.email, phone=body.phone)
        except InputError as exc:
            return error_response(400, "invalid_request", exc.message, exc.field)
        return json_response(await call(store.erase, request.match_info["app_id"], identifiers, body.dry_run))

    return routes
