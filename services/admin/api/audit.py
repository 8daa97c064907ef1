"""The audit log: filtered, newest first, in pages (`next` is the cursor of the page after)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from services.admin.api.apps import DEFAULT_LIMIT, MAX_LIMIT
from services.admin.guard import AdminContext
from services.admin.openapi import operation
from services.admin.stores.audit import AUDIT_FILTERS, AuditQuery
from shared.forwarding.audit import STATUSES
from shared.kafka.dlq import epoch_ms
from shared.openapi import Answer, documented
from shared.web import error_response, json_response, storable_text

_MAX_ID = 2**63 - 1


class BadParameter(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def audit_query(query: dict[str, str]) -> AuditQuery:
    """The query string as an AuditQuery; BadParameter naming the first bad one."""
    texts: dict[str, str | None] = {}
    for name in AUDIT_FILTERS:
        value = query.get(name, "").strip() or None
        if value is not None and not storable_text(value):
            raise BadParameter(name, f"{name} cannot contain a NUL character")
        texts[name] = value
    if texts["status"] is not None and texts["status"] not in STATUSES:
        raise BadParameter("status", f"status must be one of {', '.join(STATUSES)}")
    times: dict[str, int | None] = {}
    for name in ("since", "until"):
        try:
            # epoch ms (as recorded_at_ms); also what `apprefer dlq --since` takes: RFC 3339, 2h, yesterday...
            times[name] = epoch_ms(query.get(name))
        except ValueError as exc:
            raise BadParameter(name, f"{name}: {exc}") from None
    if times["since"] is not None and times["until"] is not None and times["since"] > times["until"]:
        raise BadParameter("since", "since is after until")
    try:
        limit = min(max(int(query.get("limit", str(DEFAULT_LIMIT))), 1), MAX_LIMIT)
    except ValueError:
        raise BadParameter("limit", "limit must be an integer") from None
    cursor = query.get("cursor", "").strip() or None
    before_id = None
    if cursor is not None:
        if not cursor.isascii() or not cursor.isdigit() or not 0 < int(cursor) <= _MAX_ID:
            raise BadParameter("cursor", "cursor must be the `next` of a page this API answered")
        before_id = int(cursor)
    return AuditQuery(**texts, since_ms=times["since"], until_ms=times["until"], before_id=before_id, limit=limit)


class AuditFilters(BaseModel):
    app_id: str | None = None
    event_id: str | None = None
    network: str | None = None
    status: Literal[STATUSES] | None = None  # type: ignore[valid-type]
    since: str | None = Field(None, description="epoch ms (as recorded_at_ms), RFC 3339, or 2h, yesterday ...")
    until: str | None = Field(None, description="as since")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="clamped to 1..1000; not an integer: a 400")
    cursor: str | None = Field(None, description="the `next` of the page before")


class AuditRecord(BaseModel):
    app_id: str
    event_id: str
    event_name: str | None
    network: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    attempts: int
    last_error: str | None
    detail: str | None
    http_status: int | None
    error_code: str | None
    latency_ms: int | None
    request_hash: str | None
    recorded_at_ms: int


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next: str | None


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store = ctx.store

    @routes.get("/admin/v1/audit")
    @documented(operation("Audit log, newest first", {200: Answer("a page of matching records", AuditPage)},
                          query=AuditFilters))
    @ctx.guarded
    async def audit(request: web.Request) -> web.StreamResponse:
        try:
            query = audit_query(dict(request.query))
        except BadParameter as exc:
            return error_response(400, "invalid_request", str(exc), exc.name)
        records, last_id = await ctx.call(store.audit_page, query)
        return json_response({"records": records, "next": None if last_id is None else str(last_id)})
