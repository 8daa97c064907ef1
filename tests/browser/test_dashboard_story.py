"""The dashboard in a real browser (Chromium, Playwright) against the real services, the real broker and a fake
Meta: one operator's whole story, from sign-in to sign-out.

Sign in (a wrong token first); create an app, a live key (its secret shown once, copied) and a tracking link;
configure Meta against the fake: Test Connection with a revoked token shows Meta's reason, with a working one ok;
a click on the link and an install, then a purchase, sent through the gateway over HTTP; the audit page shows the
delivery and the report one attributed install and one forwarded purchase (its CSV from the session); a purchase
Meta refuses lands in the dead letters, is dry-run, then replayed from the page and delivered; health; a form
posted without its CSRF token is refused and changes nothing; sign out ends the session. Every page carries the
Content-Security-Policy, the browser reports no violation of it, and no page shows a credential (the admin token,
Meta's tokens, the key's secret but on its one page). Each page is photographed into tests/artifacts/; with
APPREFER_UPDATE_SCREENSHOTS=1 two of them replace the README's (docs/img)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import create_engine, func, select

from services.admin.dashboard.sessions import COOKIE
from shared.db.models import App, Click, DashboardSession
from tests.browser.browsing import Browsing
from tests.e2e.conftest import Pipeline
from tests.fakes import FakeMeta
from tests.support.pipeline import ADMIN_TOKEN, REPO, http_call, read_topic, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.forwarders("meta"), pytest.mark.timeout(180)]

META_TOKEN = "EAAB-story-working-token-5d1c"
REVOKED_TOKEN = "EAAB-story-revoked-token-9a0e"
PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"
DOCS_IMG = REPO / "docs" / "img"
# The README's two screenshots are these pages' (docs/img): refreshed when this is set, not on every run, so a run
# of the suite leaves the working tree as it was.
UPDATE_DOCS_IMAGES = os.environ.get("APPREFER_UPDATE_SCREENSHOTS") == "1"


def event(event_id: str, name: str, device: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_name": name, "event_time": int(time.time()),
            "device": {"device_id": device, "os": "android", "ip": "203.0.113.9"}, **fields}


def publish(screenshot: Path, name: str) -> None:
    if UPDATE_DOCS_IMAGES:
        shutil.copyfile(screenshot, DOCS_IMG / name)


def test_the_operator_story_in_a_browser(pipeline: Pipeline, browser: Browser, artifacts: Path) -> None:
    pipeline.meta.tokens = {META_TOKEN}
    pipeline.meta.expire_token(REVOKED_TOKEN)
    database = create_engine(pipeline.env["DATABASE_URL"])
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=pipeline.admin.base)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=pipeline.admin.base)
    page = context.new_page()
    page.set_default_timeout(15_000)
    web = Browsing(page, pipeline.admin.base, artifacts,
                   credentials={"the admin token": ADMIN_TOKEN, "Meta's token": META_TOKEN,
                                "Meta's revoked token": REVOKED_TOKEN})
    try:
        # --- sign in: a wrong token is refused with no cookie, the right one opens the apps --------------
        web.go("/")
        expect(page).to_have_url(re.compile(r"/signin\?next=|/signin$"))
        page.get_by_label("Admin token").fill("not-the-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("That is not the admin token")
        assert not [c for c in context.cookies() if c["name"] == COOKIE]
        web.shot("sign-in-refused")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Apps")).to_be_visible()
        [cookie] = [c for c in context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        web.check()

        # --- an app, a live key (shown once, copied), a tracking link ------------------------------------
        page.get_by_role("link", name="New app").click()
        page.get_by_label("Name (required)").fill("Story app")
        page.get_by_label("Platform").select_option("android")
        page.get_by_label("Store URL").fill("https://play.google.com/store/apps/details?id=com.story")
        page.get_by_label("Click lookback (days)").fill("7")
        page.get_by_role("button", name="Create app").click()
        expect(page.get_by_role("status")).to_contain_text("App created")
        app_id = page.url.split("/apps/")[1].split("?")[0]
        web.check()
        web.shot("app")

        page.get_by_role("navigation", name="App").get_by_role("link", name="Keys").click()
        expect(page.get_by_text("No keys yet")).to_be_visible()
        page.get_by_label("Mode").first.select_option("live")
        page.get_by_role("button", name="Create key").click()
        secret_field = page.get_by_label("Key", exact=True)
        live_key = secret_field.input_value()
        assert live_key.startswith("pk_live_")
        web.credentials["the live key's secret"] = live_key
        web.check(showing="the live key's secret")
        page.get_by_role("button", name="Copy").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == live_key
        web.shot("key-shown-once")
        page.get_by_role("link", name="Done").click()
        expect(page.get_by_role("cell", name=live_key[:12] + "…")).to_be_visible()
        web.check()

        page.get_by_role("navigation", name="App").get_by_role("link", name="Tracking links").click()
        page.get_by_label("Network").select_option("meta")
        page.get_by_label("Campaign").fill("summer-sale")
        page.get_by_role("button", name="Create link").click()
        expect(page.get_by_role("status")).to_contain_text("Tracking link")
        link_url = page.locator("code.url").first.inner_text()
        assert link_url.startswith(f"{pipeline.base}/c/lnk_")
        web.check()
        web.shot("tracking-links")

        # --- Meta against the fake: a revoked token's reason, then ok ---------------------------------------
        page.get_by_role("navigation", name="App").get_by_role("link", name="Integrations").click()
        expect(page.get_by_text("No integrations yet: add")).to_be_visible()
        meta = page.locator("details#meta")
        meta.locator("summary").click()
        meta.get_by_label("Dataset Id").fill("ds-story")
        meta.get_by_label("Bundle Id").fill("com.story")
        meta.get_by_label("Access Token").fill(REVOKED_TOKEN)
        meta.get_by_label("Event mapping").fill("purchase = Purchase")
        meta.get_by_role("button", name="Save meta").click()
        expect(page.get_by_role("status").first).to_contain_text("Meta Conversions API saved")
        meta = page.locator("details#meta")
        expect(meta.locator("legend")).to_contain_text(["Settings", "Credentials set"])
        meta.get_by_role("button", name="Test Connection").click()
        expect(meta.locator("#test-meta")).to_contain_text("Connection failed", timeout=20_000)
        # Meta's reason, code 190/463 "Session has expired" (shared/forwarding/redact.py blanks the word after
        # "access token:", as it does any value after a credential's name).
        expect(meta.locator("#test-meta")).to_contain_text(re.compile(r"Meta error 190/463: .* has expired"))
        web.check()
        web.shot("integrations-revoked-token")

        meta.get_by_label("Access Token").fill(META_TOKEN)
        meta.get_by_role("button", name="Save meta").click()
        meta = page.locator("details#meta")
        meta.get_by_role("button", name="Test Connection").click()
        expect(meta.locator("#test-meta")).to_contain_text("Connection OK", timeout=20_000)
        expect(meta.locator("#test-meta")).to_contain_text("reachable with this token")
        web.check()
        publish(web.shot("integrations-test-connection-ok"), "dashboard-integrations.png")

        # --- a click, an install, a purchase: through the gateway, over HTTP -----------------------------
        status, headers, _ = http_call("GET", f"{link_url}?fbclid=IwAR-story-click", headers={"User-Agent": PHONE})
        assert status == 302
        referrer = unquote(headers["location"].split("referrer=", 1)[1])

        def click_stored() -> bool:
            with database.connect() as connection:
                return bool(connection.scalar(select(func.count()).select_from(Click).where(Click.app_id == app_id)))

        wait_until(click_stored, timeout=60, what="the click to be stored")
        pipeline.send(live_key, event("install-story", "install", "story-device",
                                      referrer={"install_referrer": referrer}))
        pipeline.send(live_key, event("buy-story", "purchase", "story-device",
                                      revenue={"amount": 9.99, "currency": "USD"}))
        pipeline.audited("buy-story", "meta", "delivered")

        # --- the audit shows the delivery; the report one attributed install, one forwarded purchase ----------
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
        page.get_by_label("App id").fill(app_id)
        page.get_by_label("Event id").fill("buy-story")
        page.get_by_role("button", name="Filter").click()
        delivered = page.locator("tr.status-delivered")
        expect(delivered).to_have_count(1)
        expect(delivered).to_contain_text("meta")
        web.check()
        web.shot("audit-delivered")

        web.go(f"/apps/{app_id}/reports")
        expect(page.locator("#installs-attributed")).to_have_text("1")
        expect(page.locator("#installs-organic")).to_have_text("0")
        purchases = page.locator("#conversion-purchase")
        expect(purchases.locator("td.events")).to_have_text("1")
        expect(purchases.locator("td.delivered")).to_have_text("1")
        expect(page.locator("#forwards-meta td.delivered")).to_have_text("1")
        expect(page.locator("figure.chart svg").first).to_be_visible()
        csv = page.request.get(page.locator("#csv-download").get_attribute("href") or "")
        assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
        assert "installs," in csv.text() and ",purchase," in csv.text()
        web.check()
        publish(web.shot("report"), "dashboard-report.png")

        # --- a purchase Meta refuses is dead-lettered, dry-run, replayed from the page, delivered ------------
        expired = FakeMeta.error_body(190, "Error validating access token: Session has expired.", 463)
        pipeline.meta.fail_next(1, 400, expired, path="/events")
        pipeline.send(live_key, event("buy-story-2", "purchase", "story-device",
                                      revenue={"amount": 4.99, "currency": "USD"}))
        pipeline.audited("buy-story-2", "meta", "rejected")
        read_topic(pipeline.bootstrap, "forward.meta.dlq",
                   lambda records: any(r["value"]["event_id"] == "buy-story-2" for r in records))

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Dead letters").click()
        page.get_by_label("Network").select_option("meta")
        page.get_by_label("Event id").fill("buy-story-2")
        page.get_by_role("button", name="Filter").click()
        row = page.locator("tbody tr", has_text="buy-story-2")
        expect(row).to_have_count(1)
        row.get_by_role("checkbox").check()
        web.check()
        page.get_by_role("button", name="Dry run").click()
        result = page.locator("#replay-result")
        expect(result).to_contain_text("Dry run: 1 would be replayed", timeout=20_000)
        expect(result).to_contain_text("buy-story-2")
        assert pipeline.meta.unique_events.get(("Purchase", "buy-story-2")) is None  # a dry run publishes nothing
        web.check()
        web.shot("dead-letters-dry-run")
        result.get_by_role("button", name="Replay 1").click()
        expect(result).to_contain_text("Replayed 1", timeout=30_000)
        web.check()
        web.shot("dead-letters-replayed")
        pipeline.audited("buy-story-2", "meta", "delivered")
        result.get_by_role("link", name="buy-story-2").click()
        expect(page.locator("tr.status-delivered").first).to_contain_text("buy-story-2")
        expect(page.locator("tr.status-retrying", has_text="replayed from forward.meta.dlq")).to_have_count(1)
        web.check()
        web.shot("audit-after-replay")

        # --- health ------------------------------------------------------------------------------------------
        web.go("/health")
        expect(page.get_by_role("heading", name="Services")).to_be_visible()
        # Every process of the pipeline asked for its own /readyz: each row says ready, none says not.
        services = page.locator("tbody tr").filter(has=page.locator("th[scope=row]"))
        expect(services.filter(has_text="forwarder-meta")).to_contain_text("ready")
        for name in ("gateway", "admin", "attribution", "fanout", "audit"):  # (the pipeline runs no SKAN decoder)
            expect(services.filter(has=page.get_by_role("rowheader", name=name, exact=True))).to_contain_text(
                "ready")
        expect(page.get_by_text("not ready")).to_have_count(0)
        # The dead letter replayed above is still on its topic (a replay publishes a copy): depth 1, from the broker.
        expect(page.locator("tr", has_text="forward.meta.dlq").locator("td").nth(2)).to_have_text("1")
        web.shot("health")

        # --- a form posted without its CSRF token changes nothing -------------------------------------------
        forged = page.request.post("/apps", form={"name": "Forged app", "platform": "android"}, max_redirects=0)
        assert forged.status == 403
        wrong = page.request.post(f"/apps/{app_id}/delete", form={"csrf_token": "guessed"}, max_redirects=0)
        assert wrong.status == 403
        with database.connect() as connection:
            assert not connection.scalar(select(func.count()).select_from(App).where(App.name == "Forged app"))
            assert connection.scalar(select(App.deleted_at_ms).where(App.app_id == app_id)) is None

        # --- every page: the CSP, no credential in its HTML --------------------------------------------------
        web.sweep()

        # --- sign out: the session ends on the server ----------------------------------------------------
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert not [c for c in context.cookies() if c["name"] == COOKIE]
        replayed = page.request.get("/apps", max_redirects=0, headers={"Cookie": f"{COOKIE}={cookie['value']}"})
        assert replayed.status == 303 and replayed.headers["location"].startswith("/signin")
        with database.connect() as connection:
            hashed = hashlib.sha256(cookie["value"].encode()).hexdigest()
            assert not connection.scalar(select(func.count()).select_from(DashboardSession)
                                         .where(DashboardSession.secret_hash == hashed))
        page.goto(pipeline.admin.base + "/apps")
        expect(page).to_have_url(re.compile(r"/signin\?next=%2Fapps$"))
        assert not web.violations, web.violations
    finally:
        context.close()
        database.dispose()
