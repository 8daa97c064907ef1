"""Apps, their API keys and their tracking links.

Lists are paged: `?limit=` (1 to 1000, default 100) and `?cursor=`, the `next` of the page before (null on the
last page). A cursor is opaque (base64url of where the page ended: its last item's creation time and id) and does
not expire: whatever is added or deleted meanwhile, a walk lists nothing twice, and lists once everything there
from its start to its end.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal, NoReturn

import orjson
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, Field, field_validator

from services.admin.guard import AdminContext, Body
from services.admin.openapi import operation
from services.admin.stores.apps import Conflict
from services.domain.revenue import DEFAULT_MAX_REVENUE_AMOUNT, MAX_REVENUE_BOUND
from shared.openapi import Answer, documented
from shared.settings import MAX_LOOKBACK_DAYS, MAX_REATTRIBUTION_DAYS
from shared.web import error_response, json_response, model_body, storable_text

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
MAX_GRACE_HOURS = 720  # 30 days
_APPLE_APP_ID = re.compile(r"[1-9][0-9]{0,19}")
_MAX_CURSOR_CHARS = 400
_MAX_POSITION_INT = 2**63 - 1


def apple_app_id(value: object) -> object:
    """An App Store id as a number (525463029), its digits ("525463029") or as its URL spells it
    ("id525463029"); stored as the digits, as SKAN postbacks' app-id reads. Anything else is refused."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be an App Store id: 525463029, \"525463029\" or \"id525463029\"")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
        text = text[2:] if text.startswith("id") else text
    else:
        raise ValueError("must be an App Store id: 525463029, \"525463029\" or \"id525463029\"")
    if not _APPLE_APP_ID.fullmatch(text):
        raise ValueError("must be an App Store id: 525463029, \"525463029\" or \"id525463029\" (digits, no "
                         "leading zero, at most 20)")
    return text


AppleAppId = Annotated[str, BeforeValidator(apple_app_id)]


class AppIn(Body):
    name: str = Field(min_length=1, max_length=200)
    platform: Literal["ios", "android"]
    store_url: str | None = Field(None, max_length=2000)
    bundle_id: str | None = Field(None, max_length=200)
    apple_app_id: AppleAppId | None = None
    lookback_days: int = Field(7, ge=1, le=MAX_LOOKBACK_DAYS)
    fingerprint_window_hours: int = Field(24, ge=1, le=168)
    reattribution_days: int = Field(90, ge=1, le=MAX_REATTRIBUTION_DAYS)
    # strict: "5000000" and true are not bounds
    max_revenue_amount: float = Field(DEFAULT_MAX_REVENUE_AMOUNT, gt=0, le=MAX_REVENUE_BOUND, strict=True)


class AppPatch(Body):
    """The fields to change, with AppIn's bounds; those not given stay. The platform cannot change."""

    name: str | None = Field(None, min_length=1, max_length=200)
    store_url: str | None = Field(None, max_length=2000)
    bundle_id: str | None = Field(None, max_length=200)
    apple_app_id: AppleAppId | None = None
    lookback_days: int | None = Field(None, ge=1, le=MAX_LOOKBACK_DAYS)
    fingerprint_window_hours: int | None = Field(None, ge=1, le=168)
    reattribution_days: int | None = Field(None, ge=1, le=MAX_REATTRIBUTION_DAYS)
    max_revenue_amount: float | None = Field(None, gt=0, le=MAX_REVENUE_BOUND, strict=True)

    @field_validator("name", "lookback_days", "fingerprint_window_hours", "reattribution_days",
                     "max_revenue_amount", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # store_url, bundle_id and apple_app_id may be cleared with null; these always have a value.
        if value is None:
            raise ValueError("may not be null")
        return value


class KeyIn(Body):
    mode: Literal["live", "test"]


class RotateIn(Body):
    mode: Literal["live", "test"]
    grace_hours: int = Field(24, ge=0, le=MAX_GRACE_HOURS, strict=True)


class LinkIn(Body):
    network: str | None = Field(None, max_length=40)
    campaign: str | None = Field(None, max_length=200)
    store_url: str | None = Field(None, max_length=2000)


class PageQuery(BaseModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="items per page")
    cursor: str | None = Field(None, description="the `next` of the page before; none: the first page")


class App(BaseModel):
    app_id: str
    name: str
    platform: Literal["ios", "android"]
    store_url: str | None
    bundle_id: str | None
    apple_app_id: str | None
    lookback_days: int
    fingerprint_window_hours: int
    reattribution_days: int
    max_revenue_amount: float
    test_app: bool = Field(description="built in for testing: the SKAN guide's simulated apps")
    created_at_ms: int


class DeletedApp(App):
    deleted_at_ms: int


class AppPage(BaseModel):
    apps: list[App]
    next: str | None


class Key(BaseModel):
    """An API key as listed: never the key nor its hash, the prefix is enough to recognise it."""

    key_id: str
    app_id: str
    mode: Literal["live", "test"]
    prefix: str
    created_at_ms: int
    revoked_at_ms: int | None
    expires_at_ms: int | None


class NewKey(Key):
    key: str = Field(pattern="^pk_(live|test)_", description="shown once: only its hash is stored")


class RotatedKey(NewKey):
    replaces: list[str] = Field(description="the key ids of the keys it replaces")
    old_valid_until_ms: int | None = Field(description="when the replaced keys stop working")


class Keys(BaseModel):
    keys: list[Key]


class Link(BaseModel):
    link_id: str
    url: str
    app_id: str
    network: str | None
    campaign: str | None
    store_url: str | None
    created_at_ms: int


class DeletedLink(Link):
    deleted_at_ms: int


class LinkPage(BaseModel):
    links: list[Link]
    next: str | None


APP_ID = {"app_id": {"description": "an app's id (an unknown or deleted one is a 404)"}}


def _bad_query(field: str, message: str) -> NoReturn:
    raise web.HTTPBadRequest(body=orjson.dumps({"error": "invalid_request", "field": field, "message": message}),
                             content_type="application/json")


def encode_cursor(position: tuple[int | str, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).rstrip(b"=").decode()


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> tuple[Any, ...]:
    """The position a cursor of encode_cursor holds, checked against `shape` (int or str per item); a 400
    naming `cursor` for anything else."""
    try:
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError
        position = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        _bad_query("cursor", "not a cursor this list gave")
    if not isinstance(position, list) or len(position) != len(shape):
        _bad_query("cursor", "not a cursor this list gave")
    for value, kind in zip(position, shape, strict=True):
        if kind is int and not (type(value) is int and 0 <= value <= _MAX_POSITION_INT):
            _bad_query("cursor", "not a cursor this list gave")
        if kind is str and not (isinstance(value, str) and len(value) <= 100 and storable_text(value)):
            _bad_query("cursor", "not a cursor this list gave")
    return tuple(position)


def page_query(request: web.Request, shape: tuple[type, ...]) -> tuple[int, tuple[Any, ...] | None]:
    """`?limit=` (1..1000, default 100) and `?cursor=` (an empty one is the first page); 400 naming either."""
    raw_limit = request.query.get("limit", "").strip()
    limit = DEFAULT_LIMIT
    if raw_limit:
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            _bad_query("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
        limit = int(raw_limit)
    cursor = request.query.get("cursor", "")
    return limit, decode_cursor(cursor, shape) if cursor else None


def next_cursor(position: tuple[int | str, ...] | None) -> str | None:
    return encode_cursor(position) if position is not None else None


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store, public_base_url = ctx.store, ctx.public_base_url

    def conflict(exc: Conflict) -> web.Response:
        return error_response(409, "conflict", exc.message, exc.field)

    # --- apps ------------------------------------------------------------------------------------

    @routes.post("/admin/v1/apps")
    @documented(operation("Create an app", {201: Answer("created", App), 409: "Conflict"}, body=AppIn))
    @ctx.guarded
    async def create_app(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, AppIn)
        try:
            return json_response(await ctx.call(store.create_app, body.model_dump()), 201)
        except Conflict as exc:
            return conflict(exc)

    @routes.get("/admin/v1/apps")
    @documented(operation("List apps, oldest first", {200: Answer("a page of apps", AppPage)}, query=PageQuery))
    @ctx.guarded
    async def list_apps(request: web.Request) -> web.StreamResponse:
        limit, after = page_query(request, (int, str))
        apps, position = await ctx.call(store.list_apps, limit, after)
        return json_response({"apps": apps, "next": next_cursor(position)})

    @routes.get("/admin/v1/apps/{app_id}")
    @documented(operation("One app", {200: Answer("the app", App), 404: "NotFound"}, path=APP_ID))
    @ctx.guarded
    async def get_app(request: web.Request) -> web.StreamResponse:
        return json_response(await ctx.call(store.get_app, request.match_info["app_id"]))

    @routes.patch("/admin/v1/apps/{app_id}")
    @documented(operation("Change an app: name, store URL, bundle id, Apple id, attribution windows",
                          {200: Answer("the app as changed", App), 404: "NotFound", 409: "Conflict"},
                          body=AppPatch, path=APP_ID))
    @ctx.guarded
    async def patch_app(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, AppPatch)
        try:
            patched = await ctx.call(store.patch_app, request.match_info["app_id"], body.model_dump(exclude_unset=True))
        except Conflict as exc:
            return conflict(exc)
        return json_response(patched)

    @routes.delete("/admin/v1/apps/{app_id}")
    @documented(operation("Delete an app: its keys stop working, its links answer 404",
                          {200: Answer("the app as it was", DeletedApp), 404: "NotFound"},
                          path=APP_ID))
    @ctx.guarded
    async def delete_app(request: web.Request) -> web.StreamResponse:
        return json_response(await ctx.call(store.delete_app, request.match_info["app_id"]))

    # --- keys ------------------------------------------------------------------------------------

    @routes.get("/admin/v1/apps/{app_id}/keys")
    @documented(operation("An app's API keys (prefix and times only)",
                          {200: Answer("every key, revoked ones too", Keys), 404: "NotFound"},
                          path=APP_ID))
    @ctx.guarded
    async def list_keys(request: web.Request) -> web.StreamResponse:
        return json_response({"keys": await ctx.call(store.list_keys, request.match_info["app_id"])})

    @routes.post("/admin/v1/apps/{app_id}/keys")
    @documented(operation("Create an API key (shown once; stored hashed)",
                          {201: Answer("the new key", NewKey), 404: "NotFound"},
                          body=KeyIn, path=APP_ID))
    @ctx.guarded
    async def create_key(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, KeyIn)
        return json_response(await ctx.call(store.create_key, request.match_info["app_id"], body.mode), 201)

    @routes.post("/admin/v1/apps/{app_id}/keys/rotate")
    @documented(operation("Rotate: a new key; the old ones of the mode keep working for grace_hours",
                          {201: Answer("the new key", RotatedKey), 404: "NotFound"},
                          body=RotateIn, path=APP_ID))
    @ctx.guarded
    async def rotate_key(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, RotateIn)
        rotated = await ctx.call(store.rotate_key, request.match_info["app_id"], body.mode, body.grace_hours)
        return json_response(rotated, 201)

    @routes.delete("/admin/v1/apps/{app_id}/keys/{key_id}")
    @documented(operation("Revoke a key at once",
                          {200: Answer("the key as revoked", Key), 404: "NotFound"},
                          path=APP_ID))
    @ctx.guarded
    async def revoke_key(request: web.Request) -> web.StreamResponse:
        app_id, key_id = request.match_info["app_id"], request.match_info["key_id"]
        return json_response(await ctx.call(store.revoke_key, app_id, key_id))

    # --- links -----------------------------------------------------------------------------------

    @routes.post("/admin/v1/apps/{app_id}/links")
    @documented(operation("Create a tracking link",
                          {201: Answer("the new link", Link), 404: "NotFound"},
                          body=LinkIn, body_required=False, path=APP_ID))
    @ctx.guarded
    async def create_link(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, LinkIn)
        created = await ctx.call(store.create_link, request.match_info["app_id"], body.model_dump(), public_base_url)
        return json_response(created, 201)

    @routes.get("/admin/v1/apps/{app_id}/links")
    @documented(operation("An app's tracking links, oldest first",
                          {200: Answer("a page of links", LinkPage), 404: "NotFound"},
                          query=PageQuery, path=APP_ID))
    @ctx.guarded
    async def list_links(request: web.Request) -> web.StreamResponse:
        limit, after = page_query(request, (int, str))
        links, position = await ctx.call(store.list_links, request.match_info["app_id"], public_base_url, limit,
                                         after)
        return json_response({"links": links, "next": next_cursor(position)})

    @routes.get("/admin/v1/apps/{app_id}/links/{link_id}")
    @documented(operation("One tracking link", {200: Answer("the link", Link), 404: "NotFound"}, path=APP_ID))
    @ctx.guarded
    async def get_link(request: web.Request) -> web.StreamResponse:
        app_id, link_id = request.match_info["app_id"], request.match_info["link_id"]
        return json_response(await ctx.call(store.get_link, app_id, link_id, public_base_url))

    @routes.delete("/admin/v1/apps/{app_id}/links/{link_id}")
    @documented(operation("Delete a tracking link: its URL answers 404",
                          {200: Answer("the link as it was", DeletedLink), 404: "NotFound"},
                          path=APP_ID))
    @ctx.guarded
    async def delete_link(request: web.Request) -> web.StreamResponse:
        app_id, link_id = request.match_info["app_id"], request.match_info["link_id"]
        return json_response(await ctx.call(store.delete_link, app_id, link_id, public_base_url))
