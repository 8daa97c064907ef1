"""A browser on the dashboard, for the tests: pages visited by URL, screenshots numbered in order into the test's
artifacts folder, and what every answer is checked for: the Content-Security-Policy, no credential in the page's
HTML (the DOM, htmx swaps included, and each page's raw HTML once more at the end), and no CSP violation reported
by the browser (an inline script, style or handler would be one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, Response

from services.admin.dashboard.security import CONTENT_SECURITY_POLICY


@dataclass
class Answer:
    url: str
    method: str
    status: int
    headers: Mapping[str, str]


@dataclass
class Browsing:
    page: Page
    base: str  # the admin service's URL
    artifacts: Path
    credentials: dict[str, str] = field(default_factory=dict)  # what no page may show, by what it is
    answers: list[Answer] = field(default_factory=list)  # every document and htmx answer
    visited: list[str] = field(default_factory=list)  # every page (GET) the story saw, for the final sweep
    violations: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("response", self._answered)
        self.page.on("console", self._console)

    def _answered(self, response: Response) -> None:
        request = response.request
        if request.resource_type == "document" or "hx-request" in request.headers:
            self.answers.append(Answer(response.url, request.method, response.status, response.headers))
            if request.method == "GET" and response.status == 200 and response.url.startswith(self.base):
                self.visited.append(response.url)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.violations.append(message.text)

    def go(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        self.check()

    def check(self, showing: str | None = None) -> None:
        """The page shows no credential (`showing`: the one it may show, the new key's page)."""
        html = self.page.content()
        for what, value in self.credentials.items():
            if what != showing:
                assert value not in html, f"{self.page.url} shows {what}"

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def sweep(self) -> None:
        """Every page seen, fetched again with the session: its raw HTML holds no credential, and every answer the
        browser got carried the Content-Security-Policy."""
        for answer in self.answers:
            if answer.url.startswith(self.base):
                assert answer.headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, answer
        for url in dict.fromkeys(self.visited):
            fetched = self.page.request.get(url, max_redirects=0)
            assert fetched.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
            text = fetched.text()
            for what, value in self.credentials.items():
                assert value not in text, f"{url} shows {what}"
        assert not self.violations, self.violations
