"""The headers every answer of the admin service carries: a strict Content-Security-Policy (scripts, styles and
images only from this origin: no inline script, style attribute or event handler runs), no framing, no sniffing,
no referrer (tracking links and ids stay on this host), and no caching of HTML (a page may show a key once)."""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """An on_response_prepare signal: it sees every answer, the static files' and the errors' included."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
