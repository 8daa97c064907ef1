"""An ad network receiving decoded SKAN postbacks: GET /install and GET /event, de-duplicated on `pid`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer


class FakeAdNetwork(FakeServer):
    name = "fake-ad-network"

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._postbacks: dict[str, dict[str, Any]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/install", self._receive)
        app.router.add_get("/event", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        if not query.get("pid"):
            return web.json_response({"error": "pid is required"}, status=400)
        with self._lock:
            self._postbacks.setdefault(query["pid"], {"kind": request.path.strip("/"), **query})
        return web.json_response({"ok": True})

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._postbacks.clear()

    @property
    def postbacks(self) -> list[dict[str, Any]]:
        """Unique postbacks received (a repeated pid counts once)."""
        with self._lock:
            return list(self._postbacks.values())
