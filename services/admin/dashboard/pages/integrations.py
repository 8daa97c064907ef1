"""App → Settings → Integrations: a card per network of the registry (and per inbound source), its form drawn from
the network's settings and credentials JSON schemas (GET /admin/v1/networks' `described()`), saved through the
admin store, which checks it against the network's models (IntegrationInvalid names the field). Credentials are
write-only: the card says whether they are set, never shows them, and a blank field keeps what is stored. Test
Connection asks the network (the admin service's connection tester) and shows its answer in the card."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from services.admin.api.integrations import IntegrationIn
from services.admin.dashboard.forms import field_errors, format_lines, number, parse_lines
from services.admin.dashboard.site import Dashboard, Form, form_of, same_as_api
from services.admin.integration_settings import IntegrationInvalid, described
from shared.crypto import CredentialsError
from shared.errors import NotFound
from shared.forwarding.model import ConnectionCheck


@dataclass(frozen=True, slots=True)
class Input:
    """One field of a card's form."""

    name: str  # the form's: settings.dataset_id, credentials.access_token
    label: str
    kind: str  # text | number | checkbox | lines | json | secret
    required: bool
    hint: str
    value: Any  # what the field shows: text, or a checkbox's state; "" for a secret, always


def _kind(part: str, prop: Mapping[str, Any]) -> str:
    if part == "credentials":
        return "secret"
    choice = next((p for p in prop.get("anyOf", []) if p.get("type") != "null"), prop)
    kind = choice.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind == "string":
        return "text"
    extra = choice.get("additionalProperties")
    if kind == "object" and isinstance(extra, Mapping) and extra.get("type") == "string":
        return "lines"  # a mapping of names: `name = value` per line
    return "json"


def _text(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "lines" and isinstance(value, Mapping):
        return format_lines(value)
    if kind == "json":
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return str(value)


def inputs(schema: Mapping[str, Any], part: str, stored: Mapping[str, Any], typed: Form | None = None) -> list[Input]:
    """The fields of a schema's properties, showing the stored values, or what was typed into a form refused."""
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        kind, form_name = _kind(part, prop), f"{part}.{name}"
        value: Any
        if kind == "secret":
            value = ""
        elif kind == "checkbox":
            value = (form_name in typed) if typed is not None else bool(stored.get(name, prop.get("default", False)))
        elif typed is not None:
            value = typed.get(form_name, "")
        else:
            value = _text(kind, stored.get(name))
        fields.append(Input(form_name, prop.get("title", name), kind, name in required, prop.get("description", ""),
                            value))
    return fields


def values_of(fields: list[Input], form: Form) -> tuple[dict[str, Any], dict[str, str]]:
    """What the form gives for these fields (a blank one is not given) and the fields that cannot be read."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        key = field.name.split(".", 1)[1]
        if field.kind == "checkbox":
            values[key] = field.name in form
            continue
        raw = form.get(field.name)
        text = raw.strip() if isinstance(raw, str) else ""
        if not text:
            continue
        try:
            if field.kind == "number":
                values[key] = number(text)
            elif field.kind == "lines":
                values[key] = parse_lines(text)
            elif field.kind == "json":
                values[key] = orjson.loads(text)
            else:
                values[key] = text
        except ValueError as exc:  # orjson.JSONDecodeError is one
            errors[field.name] = f"not readable: {exc}"
    return values, errors


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store = dash.store

    def networks() -> dict[str, dict[str, Any]]:
        return {entry["network"]: entry for entry in described()}

    def card(entry: Mapping[str, Any], stored: Mapping[str, Any] | None, typed: Form | None = None,
             errors: dict[str, str] | None = None, result: ConnectionCheck | None = None) -> dict[str, Any]:
        saved = stored or {}
        defaults = entry.get("default_event_names") or {}
        return {
            "network": entry["network"], "title": entry["title"], "kind": entry["kind"],
            "configured": stored is not None, "enabled": (("enabled" in typed) if typed is not None
                                                          else saved.get("enabled", True)),
            "credentials_set": bool(saved.get("credentials_set")),
            "settings": inputs(entry["settings_schema"], "settings", saved.get("settings") or {}, typed),
            "credentials": inputs(entry["credentials_schema"], "credentials", {}, typed),
            "event_map": (typed.get("event_map", "") if typed is not None
                          else format_lines(saved.get("event_map"))),
            "event_map_placeholder": format_lines(defaults),
            "event_names_setting": entry.get("event_names_setting"),
            "errors": errors or {}, "result": result, "testable": entry["kind"] == "forward",
            "updated_at_ms": saved.get("updated_at_ms"),
        }

    async def integrations_page(request: web.Request, app: dict[str, Any], replaced: dict[str, Any] | None = None,
                                status: int = 200) -> web.Response:
        stored = {row["network"]: row for row in await dash.ctx.call(store.list_integrations, app["app_id"])}
        listed = networks()
        cards = [replaced if replaced is not None and replaced["network"] == name else card(entry, stored.get(name))
                 for name, entry in listed.items()]
        suggested = [entry["title"] for entry in listed.values() if entry["kind"] == "forward"][:3]
        return dash.render(request, "apps/integrations.html", {
            "app": app, "cards": cards, "configured": sorted(stored), "suggested": suggested,
            "open": replaced["network"] if replaced else request.query.get("network") or request.query.get("saved"),
            "saved": listed[saved]["title"] if (saved := request.query.get("saved")) in listed else None},
            status=status)

    async def stored_credentials(app_id: str, network: str) -> dict[str, Any]:
        """The credentials stored (decrypted in memory only), for a form that changes some of them."""
        try:
            return dict((await dash.ctx.call(store.integration_config, app_id, network)).credentials)
        except (NotFound, CredentialsError):
            return {}

    @routes.get("/apps/{app_id}/integrations")
    @dash.page
    async def integrations(request: web.Request) -> web.StreamResponse:
        return await integrations_page(request, await dash.app_of(request))

    @routes.post("/apps/{app_id}/integrations/{network}")
    @dash.action(same_as_api("PUT /admin/v1/apps/{app_id}/integrations/{network}"))
    async def save(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        network = dash.ctx.network_of(request)
        entry = networks()[network]
        form = await form_of(request)
        settings, errors = values_of(inputs(entry["settings_schema"], "settings", {}), form)
        given, credential_errors = values_of(inputs(entry["credentials_schema"], "credentials", {}), form)
        errors.update(credential_errors)
        body: dict[str, Any] = {"enabled": "enabled" in form, "settings": settings}
        try:
            body["event_map"] = parse_lines(str(form.get("event_map", "")))
        except ValueError as exc:
            errors["event_map"] = str(exc)
        if not errors:
            if given:  # fields left blank keep what is stored
                body["credentials"] = {**await stored_credentials(app["app_id"], network), **given}
            try:
                fields = IntegrationIn.model_validate(body).model_dump(exclude_unset=True)
                await dash.ctx.call(store.put_integration, app["app_id"], network, fields)
            except ValidationError as exc:
                errors = field_errors(exc)
            except IntegrationInvalid as exc:
                errors = {exc.field: exc.message}
            except RuntimeError as exc:  # no APPREFER_SECRET_KEY: credentials cannot be stored
                errors = {"credentials": str(exc)}
            else:
                return dash.see_other(f"/apps/{app['app_id']}/integrations?saved={network}#{network}")
        current = {row["network"]: row for row in await dash.ctx.call(store.list_integrations, app["app_id"])}
        refused = card(entry, current.get(network), typed=form, errors=errors)
        return await integrations_page(request, app, refused, status=400)

    @routes.post("/apps/{app_id}/integrations/{network}/test")
    @dash.action(same_as_api("POST /admin/v1/apps/{app_id}/integrations/{network}/test"))
    async def test_connection(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        network = dash.ctx.network_of(request)
        tester = dash.ctx.connection_tester
        try:
            integration = await dash.ctx.call(store.integration_config, app["app_id"], network)
        except NotFound:
            check = ConnectionCheck(False, "not configured yet: save the integration first")
        except CredentialsError as exc:
            check = ConnectionCheck(False, str(exc))
        else:
            check = (ConnectionCheck(False, "connection tests are not configured") if tester is None
                     else await tester(integration))
        if dash.is_htmx(request):
            return dash.render(request, "apps/_test_result.html", {"result": check, "network": network})
        current = {row["network"]: row for row in await dash.ctx.call(store.list_integrations, app["app_id"])}
        tested = card(networks()[network], current.get(network), result=check)
        return await integrations_page(request, app, tested)
