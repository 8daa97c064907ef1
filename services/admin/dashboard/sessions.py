"""Dashboard sessions: signed in with the admin token, kept in the database, guarded against cross-site requests.

- Sign-in compares the admin token in constant time. Success makes a session: a random secret in a cookie
  (HttpOnly, SameSite=Strict, Path=/, Secure when the request came over HTTPS, Max-Age the session's life), of
  which the database keeps only the SHA-256 (services/admin/stores/dashboard_sessions.py). A restart or another
  replica finds the session; sign-out deletes it, so the cookie is worth nothing afterwards, anywhere.
- A session ends at its expiry (APPREFER_DASHBOARD_SESSION_HOURS after sign-in), at sign-out, or when
  APPREFER_ADMIN_TOKEN changes (each session remembers the id of the token it signed in with).
- CSRF: each session has a random token of its own, stored with it; every form carries it in a hidden field and
  htmx sends it as X-CSRF-Token (static/app.js, from the page's meta tag). A POST without the session's token is
  refused before anything runs. The sign-in form, which has no session yet, is guarded by a double submit: the
  sign-in page sets a random cookie (SameSite=Strict) that the form must repeat.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from services.admin.store import AdminStore
from services.admin.stores.dashboard_sessions import SessionRecord
from shared.crypto import secrets_equal, token_id
from shared.runtime import now_ms
from shared.web import storable_text

COOKIE = "apprefer_session"
SIGN_IN_COOKIE = "apprefer_sign_in"  # the sign-in form's CSRF token (double submit)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
HOUR_MS = 3_600_000
_MAX_SECRET_CHARS = 100  # a cookie longer than this is no secret we gave


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The session a request came with (request[SIGNED_IN] in the pages)."""

    secret_hash: str
    token_id: str  # of the admin token it signed in with: the admin events' `token_id`
    csrf_token: str
    expires_at_ms: int


SIGNED_IN = web.RequestKey("dashboard_signed_in", SignedIn)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_matches(given: str, admin_token: str) -> bool:
    return bool(given) and storable_text(given) and secrets_equal(given, admin_token)


def new_session(admin_token: str, hours: float, now: int | None = None) -> tuple[str, SessionRecord]:
    """A session's secret (the cookie's value, never stored) and the record to store."""
    now = now_ms() if now is None else now
    secret = secrets.token_urlsafe(32)
    record = SessionRecord(secret_hash=secret_hash(secret), token_id=token_id(admin_token),
                           csrf_token=secrets.token_urlsafe(32), created_at_ms=now,
                           expires_at_ms=now + int(hours * HOUR_MS))
    return secret, record


def cookie_secret(request: web.Request) -> str | None:
    secret = request.cookies.get(COOKIE, "")
    if not secret or len(secret) > _MAX_SECRET_CHARS or not storable_text(secret):
        return None
    return secret


def current(store: AdminStore, admin_token: str, request: web.Request) -> SignedIn | None:
    """The request's session when it is one we made, not expired, for the admin token in force. Blocking."""
    secret = cookie_secret(request)
    if secret is None:
        return None
    record = store.dashboard_session(secret_hash(secret))
    if record is None or record.expires_at_ms <= now_ms() or record.token_id != token_id(admin_token):
        return None
    return SignedIn(record.secret_hash, record.token_id, record.csrf_token, record.expires_at_ms)


def csrf_given(request: web.Request, form: Mapping[str, object]) -> str:
    value = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    return value if isinstance(value, str) else ""


def csrf_valid(expected: str, given: str) -> bool:
    return bool(expected) and bool(given) and storable_text(given) and secrets_equal(given, expected)


# APPREFER_DASHBOARD_SECURE_COOKIES: Secure whatever the scheme the request reached this service by.
ALWAYS_SECURE = web.AppKey("dashboard_always_secure", bool)


def _cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, *, path: str,
            max_age: int) -> None:
    response.set_cookie(name, value, path=path, max_age=max_age, httponly=True, samesite="Strict",
                        secure=request.secure or request.app.get(ALWAYS_SECURE, False))


def set_session_cookie(response: web.StreamResponse, request: web.Request, secret: str, hours: float) -> None:
    _cookie(response, request, COOKIE, secret, path="/", max_age=int(hours * 3600))


def clear_session_cookie(response: web.StreamResponse, request: web.Request) -> None:
    _cookie(response, request, COOKIE, "", path="/", max_age=0)


def sign_in_token(request: web.Request) -> tuple[str, bool]:
    """The sign-in form's CSRF token: the browser's cookie's when it has one, else a new one (True: set it)."""
    token = request.cookies.get(SIGN_IN_COOKIE, "")
    if token and len(token) <= _MAX_SECRET_CHARS and storable_text(token):
        return token, False
    return secrets.token_urlsafe(32), True


def set_sign_in_token(response: web.StreamResponse, request: web.Request, token: str) -> None:
    _cookie(response, request, SIGN_IN_COOKIE, token, path="/signin", max_age=3600)


def clear_sign_in_token(response: web.StreamResponse, request: web.Request) -> None:
    _cookie(response, request, SIGN_IN_COOKIE, "", path="/signin", max_age=0)


def safe_next(target: str | None, default: str = "/apps") -> str:
    """Where to go after signing in: a path of this site only (no scheme, no host, no `//`), else `default`."""
    if not target or not storable_text(target) or len(target) > 2000:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
