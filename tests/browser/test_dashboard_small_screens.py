"""Every dashboard page on a 375 px wide phone (Chromium, Playwright), against the admin service alone (its own
process, a real broker and PostgreSQL): nothing is wider than the screen (wide tables scroll in their own box),
every form field has a real label, the links and buttons are reachable with the keyboard, and the CSP holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from shared.kafka.topics import create_topics
from tests.browser.browsing import Browsing
from tests.support.pipeline import ADMIN_TOKEN, service_env, start_admin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WIDTH = 375
UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea")]
    .filter((field) => field.type !== "hidden" && !(field.labels && field.labels.length) && !field.ariaLabel)
    .map((field) => field.outerHTML)"""
TOO_WIDE = f"""() => [...document.querySelectorAll("main *")]
    .filter((element) => element.getBoundingClientRect().right > {WIDTH} && !element.closest(".table-wrap"))
    .slice(0, 5).map((element) => element.outerHTML.slice(0, 200))"""


def test_every_page_fits_a_phone_and_labels_its_fields(fresh_bootstrap: str, migrated_pg_url: str, tmp_path: Path,
                                                        browser: Browser, artifacts: Path) -> None:
    create_topics(fresh_bootstrap, partitions=1, replication=1)
    admin, base = start_admin(service_env(fresh_bootstrap, migrated_pg_url), tmp_path)
    context = browser.new_context(viewport={"width": WIDTH, "height": 800}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    web = Browsing(page, base, artifacts, credentials={"the admin token": ADMIN_TOKEN})

    def fits(name: str) -> None:
        web.shot(f"phone-{name}")
        web.check()
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= WIDTH, f"{name}: the page is {wide} px wide on a {WIDTH} px screen: {page.evaluate(TOO_WIDE)}"
        assert page.evaluate(UNLABELLED) == [], f"{name}: fields without a label"

    try:
        web.go("/signin")
        fits("sign-in")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.keyboard.press("Enter")  # the keyboard submits the form
        expect(page.get_by_role("heading", name="Apps")).to_be_visible()
        fits("apps")
        web.go("/apps/new")
        fits("new-app")
        page.get_by_label("Name (required)").fill("A phone's app with a rather long name to wrap")
        page.get_by_label("Click lookback (days)").fill("120")
        page.get_by_role("button", name="Create app").click()
        expect(page.get_by_role("alert")).to_contain_text("The app was not created")
        expect(page.locator("#f-lookback_days-error")).to_contain_text("less than or equal to 90")
        assert page.get_by_label("Click lookback (days)").get_attribute("aria-describedby", timeout=1000)
        fits("new-app-refused")
        page.get_by_label("Click lookback (days)").fill("30")
        page.get_by_role("button", name="Create app").click()
        expect(page.get_by_role("status")).to_contain_text("App created")
        app_id = page.url.split("/apps/")[1].split("?")[0]
        fits("app")

        web.go(f"/apps/{app_id}/keys")
        page.get_by_role("button", name="Create key").click()
        web.credentials["the key's secret"] = page.get_by_label("Key", exact=True).input_value()
        web.check(showing="the key's secret")
        web.go(f"/apps/{app_id}/keys")
        fits("keys")
        web.go(f"/apps/{app_id}/links")
        page.get_by_label("Campaign").fill("a-campaign-name-that-is-long-enough-to-need-wrapping")
        page.get_by_role("button", name="Create link").click()
        expect(page.locator("code.url")).to_have_count(1)
        fits("links")
        web.go(f"/apps/{app_id}/integrations?network=google_ads")
        fits("integrations")
        web.go(f"/apps/{app_id}/reports")
        fits("reports")
        web.go(f"/apps/{app_id}/skan")
        fits("skan")
        web.go(f"/apps/{app_id}/delete")
        fits("delete")
        web.go(f"/audit?app_id={app_id}")
        fits("audit")
        web.go("/dead-letters")
        fits("dead-letters")
        web.go("/health")
        fits("health")

        # The keyboard reaches the navigation: the skip link first, then the bar's links.
        page.keyboard.press("Tab")
        expect(page.locator(":focus")).to_have_text("Skip to content")
        for _ in range(2):
            page.keyboard.press("Tab")
        expect(page.locator(":focus")).to_have_attribute("href", re.compile("^/apps$"))
        web.sweep()
    finally:
        context.close()
        admin.terminate()
