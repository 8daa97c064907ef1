"""A network added by a separate package (tests/plugins/acme) is found through the `apprefer.networks` entry
point and works end to end with nothing in apprefer's tree changed: its topics are created, its settings are
validated at PUT and listed with their schema, its click id is taken from a tracking link and an install
referrer and credited by attribution, and its forwarder delivers the conversion."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from services.catalog import forwarder
from tests.fakes.base import RECORDED, FakeServer
from tests.support.pipeline import REPO, ServiceProcess, http_call, service_env, start_edge
from tests.support.pipeline import wait_until as wait
from tests.support.plugins import PLUGINS, register

pytestmark = pytest.mark.slow
API_KEY = "acme-key"


class FakeAcme(FakeServer):
    """The made-up Acme API of tests/plugins/acme: 401 for a wrong key, the conversions recorded."""

    name = "fake-acme"

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.conversions: list[dict[str, Any]] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/conversions", self._conversions)
        app.router.add_post("/v1/ping", self._ping)

    async def _conversions(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Acme-Key") != API_KEY:
            return web.json_response({"error": "bad key"}, status=401)
        body = request[RECORDED].body
        with self._lock:
            self.conversions += [{**c, "account": body["account"]} for c in body["conversions"]]
        return web.json_response({"accepted": len(body["conversions"])})

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({}, status=200 if request.headers.get("X-Acme-Key") == API_KEY else 401)


def test_a_plugin_network_is_discovered_validated_attributed_and_delivered(
        fresh_bootstrap: str, migrated_pg_url: str, tmp_path: Path) -> None:
    path = [*register(PLUGINS / "acme", tmp_path / "site"), str(REPO)]
    with FakeAcme() as acme:
        env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_ACME_BASE_URL=acme.base_url,
                          PYTHONPATH=os.pathsep.join(path))
        listed = subprocess.run([sys.executable, "-m", "services.cli", "topics", "create"], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        edge = start_edge(env, tmp_path)
        base = edge.base
        consumers = [ServiceProcess(["run", *command], env, tmp_path).start()
                     for command in (("attribution",), ("fanout",), ("audit",), forwarder("acme").command)]
        try:
            admin = edge.admin
            described = {n["network"]: n for n in admin.call("GET", "/networks")["networks"]}
            assert described["acme"]["title"] == "Acme Ads" and described["acme"]["click_id_types"] == ["acmeclid"]
            assert described["acme"]["settings_schema"]["required"] == ["account_id"]

            app = admin.new_app()
            path_ = f"/apps/{app['app_id']}/integrations/acme"
            refused = admin.call("PUT", path_, {"settings": {}, "credentials": {"api_key": API_KEY}}, expect=400)
            assert refused["field"] == "settings.account_id"
            admin.call("PUT", path_, {"settings": {"account_id": "acct-7"}, "credentials": {"api_key": API_KEY}})
            assert admin.call("POST", f"{path_}/test")["ok"] is True

            # A tracking link click carries the id as Acme's landing URLs spell it; the install's Play referrer
            # passes it back in another case.
            link = admin.call("POST", f"/apps/{app['app_id']}/links", {"network": "acme", "campaign": "spring"},
                              expect=201)
            status, _, _ = http_call("GET", f"{link['url']}?AcmeClid=AC-123&gaid=gaid-acme-1")
            assert status == 302
            headers = {"Authorization": f"Bearer {app['live_key']}"}
            install = {"event_id": "install-acme-1", "event_name": "install", "event_time": int(time.time()) - 30,
                       "device": {"device_id": "dev-acme-1", "os": "android", "gaid": "gaid-acme-1"},
                       "referrer": {"install_referrer": "utm_source=acme&ACMECLID=AC-123"}}
            purchase = {"event_id": "purchase-acme-1", "event_name": "purchase", "event_time": int(time.time()),
                        "device": {"device_id": "dev-acme-1", "os": "android"},
                        "revenue": {"amount": 4.99, "currency": "EUR"}}
            for event in (install, purchase):
                status, _, answer = http_call("POST", f"{base}/v1/events", event, headers)
                assert status == 202, answer

            def audited() -> list[dict[str, Any]]:
                return admin.call("GET", "/audit?event_id=purchase-acme-1")["records"]

            wait(lambda: any(r["network"] == "acme" and r["status"] == "delivered" for r in audited()),
                 timeout=60, what="the purchase delivered to Acme")
            assert acme.conversions == [{"id": "purchase-acme-1", "name": "sale", "click": "AC-123",
                                         "time": purchase["event_time"], "value": 4.99, "currency": "EUR",
                                         "account": "acct-7"}]
            attribution = admin.call("GET", f"/apps/{app['app_id']}/attribution?device_id=dev-acme-1")
            assert (attribution["network"], attribution["click_id_type"], attribution["click_id"]) == (
                "acme", "acmeclid", "AC-123")
            for process in (*edge.processes, *consumers):
                process.assert_alive()
        finally:
            for process in consumers:
                process.terminate()
            edge.terminate()
