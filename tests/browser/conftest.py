"""Fixtures of the dashboard's browser tests: Debian's Chromium driven by Playwright (browser downloads are not
possible here, so the system's /usr/bin/chromium; `.ci/run` installs it), headless, and the end-to-end harness's
`pipeline` (tests/e2e/conftest.py: every service, a broker and a database of the test's own, the networks'
fakes), registered here by importing its fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.conftest import pipeline  # noqa: F401  (a fixture: the e2e harness, for tests/browser too)
from tests.support.pipeline import REPO

CHROMIUM = Path(os.environ.get("APPREFER_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Per test (a second to start): Playwright's sync API runs an event loop in this thread while it is open,
    which would stop the suite's asyncio tests from running after a browser test."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """tests/artifacts/<test name>/: the test's screenshots (gitignored), emptied first."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder
