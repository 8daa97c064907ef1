"""A device's attribution, and erasure of a person's data."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, create_model

from services.admin.guard import AdminContext, Body
from services.admin.openapi import operation
from services.privacy.erasure import IDENTIFIER_KINDS, TABLES, hash_identifiers
from shared.errors import InputError
from shared.openapi import Answer, documented
from shared.web import error_response, json_response, model_body


class ErasureIn(Body):
    # Hashed as the gateway hashes `user`, which takes values as sent (an external_id is not trimmed).
    model_config = ConfigDict(str_strip_whitespace=False)

    device_id: str | None = Field(None, max_length=100)
    external_id: str | None = Field(None, max_length=1000)
    email: str | None = Field(None, max_length=1000)
    phone: str | None = Field(None, max_length=100)
    dry_run: bool = Field(False, strict=True)


class AttributionQuery(BaseModel):
    device_id: str = Field(min_length=1)
    sandbox: Literal["true", "false"] = Field("false", description="true: the device's test (pk_test_) "
                                                                   "attribution, kept apart from its live one")


class Attribution(BaseModel):
    app_id: str
    device_id: str
    sandbox: bool = Field(description="whether this is the device's test (pk_test_) state")
    attributed: bool
    network: str | None
    click_id_type: str | None
    click_id: str | None
    campaign: str | None
    matched_by: str | None = Field(description="click_id | device_id | fingerprint")
    install_event_id: str
    installed_at_ms: int
    click_time_ms: int | None


_COUNTS: dict[str, Any] = {table: (int, Field(ge=0)) for table in TABLES}
ErasureCounts = create_model(
    "ErasureCounts", __doc__="rows deleted or anonymised (a dry run: that would be) per table", **_COUNTS)


class Erasure(BaseModel):
    erasure_id: str
    app_id: str
    identifiers: list[Literal[IDENTIFIER_KINDS]] = Field(description="the kinds given")  # type: ignore[valid-type]
    dry_run: bool
    counts: ErasureCounts
    requested_at_ms: int
    note: str = Field(description="records already on Kafka age out under the topics' retention")


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store = ctx.store

    @routes.get("/admin/v1/apps/{app_id}/attribution")
    @documented(operation("How a device's install was attributed",
                          {200: Answer("the install's attribution", Attribution), 404: "NotFound"},
                          query=AttributionQuery))
    @ctx.guarded
    async def attribution(request: web.Request) -> web.StreamResponse:
        device_id = request.query.get("device_id", "").strip()
        if not device_id:
            return error_response(400, "invalid_request", "device_id is required", "device_id")
        sandbox = request.query.get("sandbox", "false").lower() in ("1", "true", "yes")
        return json_response(await ctx.call(store.attribution, request.match_info["app_id"], device_id, sandbox))

    @routes.post("/admin/v1/apps/{app_id}/erasure")
    @documented(operation("Erase a person's data: clicks, installs and identities deleted, audit rows and SKAN IPs "
                          "anonymised, the request recorded without its values",
                          {200: Answer("what was deleted or anonymised, per table", Erasure), 404: "NotFound"},
                          body=ErasureIn, body_required=False))
    @ctx.guarded
    async def erasure(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, ErasureIn)
        try:
            identifiers = hash_identifiers(device_id=body.device_id, external_id=body.external_id,
                                           email=body.email, phone=body.phone)
        except InputError as exc:
            return error_response(400, "invalid_request", exc.message, exc.field)
        return json_response(await ctx.call(store.erase, request.match_info["app_id"], identifiers, body.dry_run))
