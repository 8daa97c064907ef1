"""Dashboard sessions (services/admin/dashboard/sessions.py) on real databases (SQLite and PostgreSQL), the admin
service's app in process: sign-in with the admin token gives a strict session cookie whose secret only the browser
holds; a wrong token is a 401 with no cookie; a POST without the session's CSRF token is a 403 that changes nothing;
sessions survive a restart, work on a second replica, expire, end with a changed admin token, and sign-out ends
them everywhere."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator, Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, make_mocked_request
from pydantic import ValidationError
from sqlalchemy import func, select, update

from services.admin.dashboard import sessions
from services.admin.dashboard.security import CONTENT_SECURITY_POLICY
from shared.db.migrate import upgrade
from shared.db.models import AdminEvent, App, DashboardSession
from shared.runtime import now_ms
from shared.settings import Settings
from tests.support.dashboard import AdminService, admin_service, client_of, csrf_of, sign_in
from tests.support.pipeline import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("migrated_pg_url"))
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    upgrade(url)
    return url


@pytest.fixture
def replicas(database_url: str) -> Iterator[list[AdminService]]:
    """Two admin services on one database, as two replicas (or one before and after a restart) are."""
    made = [admin_service(database_url, session_hours=2), admin_service(database_url, session_hours=2)]
    yield made
    for service in made:
        service.dispose()


@pytest.fixture
async def clients(replicas: list[AdminService]) -> AsyncIterator[list[TestClient[web.Request, web.Application]]]:
    made = [await client_of(service) for service in replicas]
    yield made
    for client in made:
        await client.close()


def set_cookies(answer: ClientResponse) -> list[str]:
    return list(answer.headers.getall("Set-Cookie", []))


def count(service: AdminService, model: type) -> int:
    with service.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def apps_named(service: AdminService, name: str) -> int:
    with service.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(App).where(App.name == name)) or 0)


async def test_sign_in_gives_a_strict_session_cookie_and_stores_only_its_hash(
        clients: list[TestClient[web.Request, web.Application]], replicas: list[AdminService]) -> None:
    client = clients[0]
    first = await client.get("/apps", allow_redirects=False)
    assert (first.status, first.headers["Location"]) == (303, "/signin?next=%2Fapps")
    page = await client.get("/signin?next=/apps")
    assert page.status == 200 and page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    form = await page.text()
    assert 'for="token"' in form and ADMIN_TOKEN not in form

    answer = await client.post("/signin", data={"csrf_token": csrf_of(form), "token": ADMIN_TOKEN,
                                                "next": "/apps"}, allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/apps")
    [header] = [h for h in set_cookies(answer) if h.startswith(f"{sessions.COOKIE}=")]
    morsel = SimpleCookie(header)[sessions.COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert not morsel["secure"]  # plain HTTP here; HTTPS: test_the_cookie_is_secure_over_https
    assert morsel["max-age"] == str(2 * 3600)  # APPREFER_DASHBOARD_SESSION_HOURS=2
    secret = morsel.value

    with replicas[0].engine.connect() as connection:
        [row] = connection.execute(select(DashboardSession)).all()
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(tuple(row)) and ADMIN_TOKEN not in repr(tuple(row))
    assert row.expires_at_ms - row.created_at_ms == 2 * 3_600_000
    apps = await client.get("/apps")
    assert apps.status == 200 and "New app" in await apps.text()
    with replicas[0].engine.connect() as connection:
        assert connection.scalar(select(AdminEvent.action)) == "session.create"


async def test_a_wrong_token_is_a_401_with_no_cookie(clients: list[TestClient[web.Request, web.Application]],
                                                     replicas: list[AdminService]) -> None:
    client = clients[0]
    page = await client.get("/signin")
    for wrong in ("wrong-token", "", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
        answer = await client.post("/signin", data={"csrf_token": csrf_of(await page.text()), "token": wrong},
                                   allow_redirects=False)
        text = await answer.text()
        assert answer.status == 401 and "That is not the admin token" in text, wrong
        assert set_cookies(answer) == [] and 'aria-describedby="token-error"' in text
    assert count(replicas[0], DashboardSession) == 0 and count(replicas[0], AdminEvent) == 0
    assert (await client.get("/apps", allow_redirects=False)).status == 303


async def test_sign_in_wants_its_form_token(clients: list[TestClient[web.Request, web.Application]],
                                            replicas: list[AdminService]) -> None:
    client = clients[0]
    no_page = await client.post("/signin", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert no_page.status == 403 and set_cookies(no_page) == []
    await client.get("/signin")  # the form's cookie is set
    forged = await client.post("/signin", data={"token": ADMIN_TOKEN, "csrf_token": "made-up"},
                               allow_redirects=False)
    assert forged.status == 403 and count(replicas[0], DashboardSession) == 0


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
        clients: list[TestClient[web.Request, web.Application]], replicas: list[AdminService]) -> None:
    client = clients[0]
    await sign_in(client)
    token = csrf_of(await (await client.get("/apps/new")).text())
    app = {"name": "Refused", "platform": "android"}
    for refused in ({}, {"csrf_token": ""}, {"csrf_token": "not-the-token"}, {"csrf_token": token + "x"}):
        answer = await client.post("/apps", data={**app, **refused}, allow_redirects=False)
        assert answer.status == 403 and "security token" in await answer.text(), refused
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert apps_named(replicas[0], "Refused") == 0
    with replicas[0].engine.connect() as connection:
        assert connection.scalars(select(AdminEvent.action)).all() == ["session.create"]  # the refusals: none

    made = await client.post("/apps", data={**app, "csrf_token": token}, allow_redirects=False)
    assert made.status == 303 and made.headers["Location"].startswith("/apps/app_")
    by_header = await client.post("/apps", data=app, headers={sessions.CSRF_HEADER: token}, allow_redirects=False)
    assert by_header.status == 303  # what htmx sends (static/app.js)
    assert apps_named(replicas[0], "Refused") == 2


async def test_sessions_survive_a_restart_and_serve_on_another_replica_until_sign_out(
        clients: list[TestClient[web.Request, web.Application]], replicas: list[AdminService]) -> None:
    one, other = clients
    secret = await sign_in(one)
    cookie = {"Cookie": f"{sessions.COOKIE}={secret}"}
    assert (await other.get("/apps", headers=cookie, allow_redirects=False)).status == 200

    # Sign-out wants the CSRF token too, then ends the session for every replica.
    token = csrf_of(await (await one.get("/apps")).text())
    refused = await one.post("/signout", data={}, allow_redirects=False)
    assert refused.status == 403 and count(replicas[0], DashboardSession) == 1
    out = await one.post("/signout", data={"csrf_token": token}, allow_redirects=False)
    assert (out.status, out.headers["Location"]) == (303, "/signin")
    cleared = SimpleCookie(next(h for h in set_cookies(out) if h.startswith(sessions.COOKIE)))[sessions.COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert count(replicas[0], DashboardSession) == 0
    for client in (one, other):
        again = await client.get("/apps", headers=cookie, allow_redirects=False)
        assert again.status == 303 and again.headers["Location"].startswith("/signin")
    with replicas[1].engine.connect() as connection:
        assert connection.scalars(select(AdminEvent.action).order_by(AdminEvent.id)).all() == [
            "session.create", "session.delete"]


async def test_an_expired_or_unknown_session_goes_to_sign_in(
        clients: list[TestClient[web.Request, web.Application]], replicas: list[AdminService]) -> None:
    client = clients[0]
    secret = await sign_in(client)
    assert (await client.get("/audit", allow_redirects=False)).status == 200
    with replicas[0].engine.begin() as connection:
        connection.execute(update(DashboardSession).values(expires_at_ms=now_ms() - 1))
    expired = await client.get("/audit?status=rejected", allow_redirects=False)
    assert (expired.status, expired.headers["Location"]) == (303, "/signin?next=%2Faudit%3Fstatus%3Drejected")
    assert any(h.startswith(f"{sessions.COOKIE}=") and "Max-Age=0" in h for h in set_cookies(expired))
    # An expired session's POST does nothing either; an htmx request is told where to go.
    posted = await client.post("/apps", data={"name": "x", "platform": "ios"}, allow_redirects=False,
                               headers={"Cookie": f"{sessions.COOKIE}={secret}"})
    assert posted.status == 303 and apps_named(replicas[0], "x") == 0
    htmx = await client.post("/apps/x/integrations/meta/test", allow_redirects=False,
                             headers={"HX-Request": "true", "Cookie": f"{sessions.COOKIE}={secret}"})
    assert htmx.status == 401 and htmx.headers["HX-Redirect"] == "/signin"
    for unknown in ("made-up", "x" * 500, ""):
        answer = await client.get("/apps", headers={"Cookie": f"{sessions.COOKIE}={unknown}"}, allow_redirects=False)
        assert answer.status == 303, unknown
    # A later sign-in clears the expired rows.
    await sign_in(client)
    assert count(replicas[0], DashboardSession) == 1


async def test_a_changed_admin_token_ends_the_sessions_of_the_old_one(database_url: str) -> None:
    before, after = admin_service(database_url), admin_service(database_url, admin_token="a-new-admin-token")
    old, new = await client_of(before), await client_of(after)
    try:
        secret = await sign_in(old)
        answer = await new.get("/apps", headers={"Cookie": f"{sessions.COOKIE}={secret}"}, allow_redirects=False)
        assert answer.status == 303
        page = await new.get("/signin")
        refused = await new.post("/signin", data={"csrf_token": csrf_of(await page.text()), "token": ADMIN_TOKEN},
                                 allow_redirects=False)
        assert refused.status == 401
        await sign_in(new, "a-new-admin-token")
    finally:
        await old.close()
        await new.close()
        before.dispose()
        after.dispose()


async def test_without_an_admin_token_the_dashboard_is_disabled(database_url: str) -> None:
    service = admin_service(database_url, admin_token=None)
    client = await client_of(service)
    try:
        for path in ("/signin", "/apps"):
            answer = await client.get(path, allow_redirects=False)
            assert answer.status == 503 and "APPREFER_ADMIN_TOKEN is not set" in await answer.text()
        assert (await client.post("/signin", data={"token": ""}, allow_redirects=False)).status == 503
    finally:
        await client.close()
        service.dispose()


async def test_sign_in_only_goes_on_to_a_page_of_this_site(
        clients: list[TestClient[web.Request, web.Application]]) -> None:
    for target, expected in (("/audit?status=rejected", "/audit?status=rejected"), ("https://evil.example/", "/apps"),
                             ("//evil.example/x", "/apps"), ("/\\evil.example", "/apps"), ("javascript:x", "/apps")):
        client = clients[0]
        client.session.cookie_jar.clear()
        page = await client.get("/signin")
        answer = await client.post("/signin", data={"csrf_token": csrf_of(await page.text()), "token": ADMIN_TOKEN,
                                                    "next": target}, allow_redirects=False)
        assert (answer.status, answer.headers["Location"]) == (303, expected), target


def test_the_cookie_is_secure_over_https() -> None:
    request = make_mocked_request("POST", "/signin", sslcontext=ssl.create_default_context())
    assert request.secure
    response = web.Response()
    sessions.set_session_cookie(response, request, "secret", 12)
    morsel = response.cookies[sessions.COOKIE]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["max-age"] == str(12 * 3600)


def test_the_cookie_is_secure_behind_a_tls_proxy_when_configured() -> None:
    app = web.Application()
    app[sessions.ALWAYS_SECURE] = True
    request = make_mocked_request("POST", "/signin", app=app)
    assert not request.secure  # plain HTTP from the proxy
    response = web.Response()
    sessions.set_session_cookie(response, request, "secret", 12)
    assert response.cookies[sessions.COOKIE]["secure"]
    assert Settings().dashboard_secure_cookies is False


def test_the_session_length_is_configured_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().dashboard_session_hours == 12
    monkeypatch.setenv("APPREFER_DASHBOARD_SESSION_HOURS", "0.5")
    assert Settings().dashboard_session_hours == 0.5
    for refused in ("0", "-1", "721", "many"):
        monkeypatch.setenv("APPREFER_DASHBOARD_SESSION_HOURS", refused)
        with pytest.raises(ValidationError):
            Settings()
