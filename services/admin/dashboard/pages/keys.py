"""An app's API keys: create (the secret shown this once, with a copy button), revoke, rotate with a grace period.
The page showing a secret is the answer to the POST itself: no URL or later page holds it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from services.admin.api.apps import MAX_GRACE_HOURS, KeyIn, RotateIn
from services.admin.dashboard.forms import field_errors, model_values, text_fields
from services.admin.dashboard.site import Dashboard, form_of, same_as_api


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store = dash.store

    async def keys_page(request: web.Request, errors: dict[str, str] | None = None,
                        values: dict[str, str] | None = None, status: int = 200) -> web.Response:
        app = await dash.app_of(request)
        keys = await dash.ctx.call(store.list_keys, app["app_id"])
        return dash.render(request, "apps/keys.html", {
            "app": app, "keys": keys, "errors": errors or {}, "values": {"grace_hours": "24", **(values or {})},
            "max_grace_hours": MAX_GRACE_HOURS, "revoked": request.query.get("revoked")}, status=status)

    def secret_page(request: web.Request, app: dict[str, Any], created: dict[str, Any]) -> web.Response:
        return dash.render(request, "apps/key_secret.html", {"app": app, "created": created}, status=201)

    @routes.get("/apps/{app_id}/keys")
    @dash.page
    async def keys(request: web.Request) -> web.StreamResponse:
        return await keys_page(request)

    @routes.post("/apps/{app_id}/keys")
    @dash.action(same_as_api("POST /admin/v1/apps/{app_id}/keys"))
    async def create_key(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        form = await form_of(request)
        try:
            body = KeyIn.model_validate(model_values(KeyIn, form, blank_is_null=False))
        except ValidationError as exc:
            return await keys_page(request, field_errors(exc), status=400)
        return secret_page(request, app, await dash.ctx.call(store.create_key, app["app_id"], body.mode))

    @routes.post("/apps/{app_id}/keys/rotate")
    @dash.action(same_as_api("POST /admin/v1/apps/{app_id}/keys/rotate"))
    async def rotate_key(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        form = await form_of(request)
        try:
            body = RotateIn.model_validate(model_values(RotateIn, form, blank_is_null=False))
        except ValidationError as exc:
            errors = {f"rotate_{name}": message for name, message in field_errors(exc).items()}
            return await keys_page(request, errors, text_fields(form, ("grace_hours",)), status=400)
        rotated = await dash.ctx.call(store.rotate_key, app["app_id"], body.mode, body.grace_hours)
        return secret_page(request, app, rotated)

    @routes.post("/apps/{app_id}/keys/{key_id}/revoke")
    @dash.action(same_as_api("DELETE /admin/v1/apps/{app_id}/keys/{key_id}"))
    async def revoke_key(request: web.Request) -> web.StreamResponse:
        app_id, key_id = request.match_info["app_id"], request.match_info["key_id"]
        revoked = await dash.ctx.call(store.revoke_key, app_id, key_id)
        return dash.see_other(f"/apps/{app_id}/keys?revoked={revoked['key_id']}")
