"""SKAN conversion schemas and postbacks."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from services.admin.guard import AdminContext
from services.admin.openapi import operation
from shared.errors import InputError
from shared.openapi import Answer, documented
from shared.web import error_response, json_object_body, json_response


class SkanSchemaIn(BaseModel):
    """A SKAN conversion schema (docs/skan.md), checked by services/domain/skan/decode.py parse_schema: keys of another
    mode, or unknown keys, are a 400 invalid_schema naming the key."""

    schema_id: str = Field(min_length=1, max_length=100)
    valid_from: str = Field(description="RFC 3339 with an offset")
    mode: Literal["revenue", "conversion", "engagement", "table"]
    signature_policy: Literal["enforce", "record", "skip"] = "enforce"
    currency: str | None = Field(None, pattern="^[A-Z]{3}$")
    event_name: str | None = None
    unit: float | None = None
    events: list[str] | None = Field(None, min_length=1, max_length=6)
    fine: dict[str, Any] | None = None
    coarse: dict[str, Any] | None = None


class StoredSkanSchema(BaseModel):
    app_id: str
    schema_id: str
    mode: str
    signature_policy: str
    valid_from: str


class SkanSchema(BaseModel):
    app_id: str
    schema_id: str
    valid_from: str
    valid_from_ms: int
    mode: str | None
    signature_policy: str
    in_force: bool = Field(description="the one the decoder uses for postbacks received now")
    schema_: dict[str, Any] = Field(alias="schema", description="as stored")
    updated_at_ms: int


class SkanSchemas(BaseModel):
    schemas: list[SkanSchema]


class SkanPostback(BaseModel):
    """One window of a postback as stored and decoded."""

    model_config = {"extra": "allow"}
    transaction_id: str
    postback_sequence_index: int
    app_id: str | None
    ad_network_id: str | None
    signature: str | None


class SkanPostbacks(SkanPostback):
    """The first window, and all of them."""

    postbacks: list[SkanPostback]


APP_ID = {"app_id": {"description": "an app's id"}}
EXAMPLE_SCHEMA = {"schema_id": "v1", "valid_from": "2024-01-01T00:00:00Z", "mode": "conversion",
                  "events": ["signup", "purchase"], "coarse": {"0": {"high": [{"event_name": "purchase"}]}}}


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store = ctx.store

    @routes.put("/admin/v1/apps/{app_id}/skan/schema")
    @documented(operation("Store a SKAN conversion schema", {200: Answer("stored", StoredSkanSchema), 404: "NotFound"},
                          body=SkanSchemaIn, body_examples={"example": EXAMPLE_SCHEMA}, path=APP_ID))
    @ctx.guarded
    async def put_skan_schema(request: web.Request) -> web.StreamResponse:
        body = await json_object_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            return json_response(await ctx.call(store.put_skan_schema, request.match_info["app_id"], body))
        except InputError as exc:  # the schema's own (decode.parse_schema): the message names the field too
            return error_response(400, "invalid_schema", str(exc), exc.field)
        except OverflowError:  # valid_from like 0001-01-01T00:00:00+14:00: outside datetime's range in UTC
            return error_response(400, "invalid_schema", "valid_from: is out of range", "valid_from")

    @routes.get("/admin/v1/apps/{app_id}/skan/schema")
    @documented(operation("The SKAN conversion schema in force",
                          {200: Answer("the schema", SkanSchema), 404: "NotFound"}, path=APP_ID))
    @ctx.guarded
    async def skan_schema_in_force(request: web.Request) -> web.StreamResponse:
        return json_response(await ctx.call(store.skan_schema_in_force, request.match_info["app_id"]))

    @routes.get("/admin/v1/apps/{app_id}/skan/schemas")
    @documented(operation("Every SKAN conversion schema of the app, the latest valid_from first",
                          {200: Answer("the history", SkanSchemas), 404: "NotFound"}, path=APP_ID))
    @ctx.guarded
    async def skan_schemas(request: web.Request) -> web.StreamResponse:
        return json_response({"schemas": await ctx.call(store.skan_schemas, request.match_info["app_id"])})

    @routes.get("/admin/v1/skan/postbacks/{transaction_id}")
    @documented(operation("A SKAN postback's windows as stored and decoded",
                          {200: Answer("the first window, and all of them", SkanPostbacks), 404: "NotFound"}))
    @ctx.guarded
    async def skan_postback(request: web.Request) -> web.StreamResponse:
        return json_response(await ctx.call(store.skan_postbacks, request.match_info["transaction_id"]))
