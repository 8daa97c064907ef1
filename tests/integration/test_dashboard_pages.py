"""The dashboard's forms against a real database (SQLite), the admin service's app in process, signed in: a refused
field's message is next to it (aria-describedby) with a 400 or 409, what the API's models refuse the pages refuse
too, every change is an admin event under the API's action names, credentials are write-only (blank keeps them),
Test Connection answers inline, a secret key is shown on its one page only, and the report's CSV comes from the
session. The browser story (tests/browser) runs the same pages against the whole pipeline."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from shared.db.migrate import upgrade
from shared.db.models import AdminEvent
from tests.support.dashboard import AdminService, admin_service, client_of, csrf_of, sign_in

pytestmark = pytest.mark.timeout(60)
Client = TestClient[web.Request, web.Application]


class Signed:
    def __init__(self, client: Client, service: AdminService) -> None:
        self.client, self.service = client, service
        self.token = ""

    async def get(self, path: str, status: int = 200) -> str:
        answer = await self.client.get(path, allow_redirects=False)
        text = await answer.text()
        assert answer.status == status, (path, answer.status, text[:2000])
        if answer.content_type == "text/html":
            self.token = csrf_of(text) if 'name="csrf_token"' in text else self.token
            every_form_has_the_token(text)
        return text

    async def post(self, path: str, data: dict[str, Any], status: int = 303, **headers: str) -> tuple[str, str]:
        """The answer's text and Location."""
        answer = await self.client.post(path, data={"csrf_token": self.token, **data}, headers=headers,
                                        allow_redirects=False)
        text = await answer.text()
        assert answer.status == status, (path, answer.status, text[:3000])
        return text, answer.headers.get("Location", "")

    def actions(self) -> list[str]:
        with self.service.engine.connect() as connection:
            return list(connection.scalars(select(AdminEvent.action).order_by(AdminEvent.id)))


@pytest.fixture
async def signed(tmp_path: Path) -> AsyncIterator[Signed]:
    url = f"sqlite:///{tmp_path / 'pages.db'}"
    upgrade(url)
    service = admin_service(url)
    client = await client_of(service)
    await sign_in(client)
    session = Signed(client, service)
    await session.get("/apps")
    yield session
    await client.close()
    service.dispose()


def every_form_has_the_token(html: str) -> None:
    """Each POST form of the page carries the session's CSRF token (the sign-out form's, in the nav bar)."""
    forms = re.findall(r'<form [^>]*method="post".*?</form>', html, re.S)
    tokens = {re.findall(r'name="csrf_token" value="([^"]*)"', form)[0] if 'name="csrf_token"' in form else ""
              for form in forms}
    assert len(tokens) == 1 and "" not in tokens, tokens


def error_next_to(html: str, field_id: str) -> str:
    """The message of the field whose input has this id, checked to be tied to it by aria-describedby."""
    described = re.search(rf'id="{field_id}"[^>]*aria-describedby="([^"]*)"', html)
    assert described, f"{field_id} is not described by an error"
    error_id = described.group(1).split()[0]
    message = re.search(rf'<p class="error" id="{error_id}">([^<]*)</p>', html)
    assert message, f"no error {error_id}"
    return message.group(1)


async def new_app(signed: Signed, **fields: str) -> str:
    await signed.get("/apps/new")
    _, location = await signed.post("/apps", {"name": "Shop", "platform": "android", **fields})
    return location.split("/")[2].split("?")[0]


async def test_refused_fields_are_shown_next_to_the_field(signed: Signed) -> None:
    await signed.get("/apps/new")
    text, _ = await signed.post("/apps", {"name": "", "platform": "android", "lookback_days": "999",
                                          "max_revenue_amount": "lots"}, status=400)
    assert "Field required" in error_next_to(text, "f-name")
    assert "less than or equal to 90" in error_next_to(text, "f-lookback_days")
    assert "valid number" in error_next_to(text, "f-max_revenue_amount")
    assert 'value="999"' in text  # what was typed is shown again

    app_id = await new_app(signed, apple_app_id="id525463029")
    await signed.get(f"/apps/{app_id}")
    text, _ = await signed.post(f"/apps/{app_id}", {"name": "Shop", "lookback_days": "0"}, status=400)
    assert "greater than or equal to 1" in error_next_to(text, "f-lookback_days")
    text, _ = await signed.post(f"/apps/{app_id}", {"name": "", "lookback_days": "7"}, status=400)
    assert error_next_to(text, "f-name") == "may not be null"
    _, location = await signed.post(f"/apps/{app_id}", {"name": "Shop 2", "lookback_days": "30",
                                                        "fingerprint_window_hours": "12", "reattribution_days": "60",
                                                        "max_revenue_amount": "500", "apple_app_id": "525463029"})
    assert location == f"/apps/{app_id}?saved=1"
    page = await signed.get(location)
    assert 'value="Shop 2"' in page and 'value="30"' in page and "Saved." in page

    await signed.get("/apps/new")
    text, _ = await signed.post("/apps", {"name": "Twin", "platform": "ios", "apple_app_id": "525463029"}, status=409)
    assert f"app {app_id} has apple_app_id" in error_next_to(text, "f-apple_app_id")
    assert signed.actions() == ["session.create", "app.create", "app.create", "app.patch", "app.patch", "app.patch",
                                "app.create"]


async def test_keys_show_their_secret_once_and_rotate_and_revoke(signed: Signed) -> None:
    app_id = await new_app(signed)
    await signed.get(f"/apps/{app_id}/keys")
    shown, _ = await signed.post(f"/apps/{app_id}/keys", {"mode": "live"}, status=201)
    secret = re.search(r'id="key-secret" type="text" readonly value="(pk_live_[^"]+)"', shown)
    assert secret and 'data-copy="key-secret"' in shown
    keys = await signed.get(f"/apps/{app_id}/keys")
    assert secret.group(1) not in keys and secret.group(1)[:12] in keys
    refused, _ = await signed.post(f"/apps/{app_id}/keys/rotate", {"mode": "live", "grace_hours": "9999"}, status=400)
    assert "less than or equal to 720" in error_next_to(refused, "rotate-grace_hours")
    rotated, _ = await signed.post(f"/apps/{app_id}/keys/rotate", {"mode": "live", "grace_hours": "1"}, status=201)
    assert "it replaces key_" in rotated
    key_id = re.search(r"(key_\d+)</code>", rotated)
    assert key_id
    _, location = await signed.post(f"/apps/{app_id}/keys/{key_id.group(1)}/revoke", {})
    assert "revoked" in await signed.get(location)
    assert signed.actions()[-4:] == ["key.create", "key.rotate", "key.rotate", "key.delete"]  # the 400 too


async def test_integrations_keep_credentials_write_only_and_test_the_connection(signed: Signed) -> None:
    app_id = await new_app(signed)
    page = await signed.get(f"/apps/{app_id}/integrations")
    assert "No integrations yet: add Google Ads" in page and 'id="f-meta-settings-dataset_id"' in page
    text, _ = await signed.post(f"/apps/{app_id}/integrations/meta", {"enabled": "true",
                                                                      "credentials.access_token": "EAAB-first"},
                                status=400)
    assert error_next_to(text, "f-meta-settings-dataset_id") == "Field required"
    assert "EAAB-first" not in text
    _, location = await signed.post(f"/apps/{app_id}/integrations/meta", {
        "enabled": "true", "settings.dataset_id": "ds-1", "credentials.access_token": "EAAB-first",
        "event_map": "purchase = Purchase\nsignup = CompleteRegistration"})
    assert location == f"/apps/{app_id}/integrations?saved=meta#meta"
    page = await signed.get(f"/apps/{app_id}/integrations?saved=meta")
    assert "EAAB-first" not in page and 'value="ds-1"' in page and "signup = CompleteRegistration" in page
    assert re.search(r"Credentials <span class=\"badge on\">set</span>", page)

    # A blank credential keeps the stored one; a wrong mapping line is named.
    await signed.post(f"/apps/{app_id}/integrations/meta", {"settings.dataset_id": "ds-2"})
    config = signed.service.store.integration_config(app_id, "meta")
    assert config.credentials == {"access_token": "EAAB-first"} and config.settings["dataset_id"] == "ds-2"
    assert config.enabled is False  # the box was not ticked
    text, _ = await signed.post(f"/apps/{app_id}/integrations/meta", {"settings.dataset_id": "ds-2",
                                                                      "event_map": "purchase"}, status=400)
    assert "name = value" in error_next_to(text, "f-meta-event_map")

    fragment, _ = await signed.post(f"/apps/{app_id}/integrations/meta/test", {}, status=200, **{"HX-Request": "true"})
    assert fragment.strip().startswith('<p class="result ok">') and "dataset ds-1 is reachable" in fragment
    assert signed.service.tested[-1].credentials == {"access_token": "EAAB-first"}
    not_yet, _ = await signed.post(f"/apps/{app_id}/integrations/tiktok/test", {}, status=200)
    assert "save the integration first" in not_yet and "<nav" in not_yet  # without htmx: the whole page
    await signed.get(f"/apps/{app_id}/integrations/nowhere/test", status=405)
    await signed.post(f"/apps/{app_id}/integrations/nowhere", {}, status=404)
    assert signed.actions()[2:] == ["integration.put"] * 4 + ["integration.test"] * 2 + ["integration.put"]


async def test_links_skan_audit_and_reports_pages(signed: Signed) -> None:
    app_id = await new_app(signed)
    await signed.get(f"/apps/{app_id}/links")
    _, location = await signed.post(f"/apps/{app_id}/links", {"network": "meta", "campaign": "summer"})
    links = await signed.get(location)
    url = re.search(r'<code id="url-(lnk_[0-9a-f]+)" class="url">(http://gateway.test/c/lnk_[0-9a-f]+)</code>', links)
    assert url and 'data-copy="url-' in links
    await signed.post(f"/apps/{app_id}/links/{url.group(1)}/delete", {})
    assert "No tracking links yet" in await signed.get(f"/apps/{app_id}/links")

    skan = await signed.get(f"/apps/{app_id}/skan")
    assert "No conversion schema in force" in skan and "No postbacks yet" in skan
    text, _ = await signed.post(f"/apps/{app_id}/skan/schema", {"schema": '{"mode": "revenue"}'}, status=400)
    assert error_next_to(text, "f-schema").startswith("schema_id")
    text, _ = await signed.post(f"/apps/{app_id}/skan/schema", {"schema": "{not json"}, status=400)
    assert error_next_to(text, "f-schema").startswith("not JSON")
    schema = ('{"schema_id": "v1", "valid_from": "2024-01-01T00:00:00Z", "mode": "revenue", "event_name": "purchase",'
              ' "currency": "USD", "unit": 1.0}')
    _, location = await signed.post(f"/apps/{app_id}/skan/schema", {"schema": schema})
    assert "Conversion schema in force" in (page := await signed.get(location)) and "revenue" in page
    await signed.get(f"/apps/{app_id}/skan/postbacks/no-such-transaction", status=404)

    audit = await signed.get(f"/audit?app_id={app_id}")
    assert "Nothing matches these filters" in audit
    refused = await signed.get("/audit?status=lost&since=never", status=400)
    assert "status must be one of" in error_next_to(refused, "f-status")

    report = await signed.get(f"/apps/{app_id}/reports?from=2024-01-01&to=2024-01-07")
    assert '<svg' in report and 'id="installs-attributed">0<' in report
    assert f"/apps/{app_id}/reports.csv?from=2024-01-01&amp;to=2024-01-07" in report
    refused = await signed.get(f"/apps/{app_id}/reports?from=2024-01-09&to=2024-01-01", status=400)
    assert "must be before to" in error_next_to(refused, "f-from")
    answer = await signed.client.get(f"/apps/{app_id}/reports.csv?from=2024-01-01&to=2024-01-07")
    assert answer.status == 200 and answer.content_type == "text/csv"
    assert (await answer.text()).startswith("section,day,attributed,network")
    assert "attachment" in answer.headers["Content-Disposition"]
    letters = await signed.client.get("/dead-letters")
    assert letters.status == 503 and "not configured" in await letters.text()
    signed.client.session.cookie_jar.clear()
    assert (await signed.client.get(f"/apps/{app_id}/reports.csv", allow_redirects=False)).status == 303


async def test_deleting_an_app_asks_first(signed: Signed) -> None:
    app_id = await new_app(signed)
    confirm = await signed.get(f"/apps/{app_id}/delete")
    assert "Yes, delete Shop" in confirm and f'action="/apps/{app_id}/delete"' in confirm
    _, location = await signed.post(f"/apps/{app_id}/delete", {})
    assert location == f"/apps?deleted={app_id}"
    await signed.get(f"/apps/{app_id}", status=404)
    assert signed.actions()[-1] == "app.delete"
