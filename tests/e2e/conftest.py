"""Fixtures for tests that run the whole pipeline against fake networks (tests/fakes/)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.kafka.topics import create_topics
from tests.fakes import FakeGoogleAds, FakeMeta, FakeTikTok
from tests.support.pipeline import REPO, AdminApi, ServiceProcess, http_call, service_env, start_gateway
from tests.support.pipeline import wait_until as wait

CONVERSION_ACTION = "customers/1234567890/conversionActions/99"
SERVICES = (["run", "attribution"], ["run", "fanout"], ["run", "audit"], ["run", "forwarder", "--network", "meta"],
            ["run", "forwarder", "--network", "google_ads"], ["run", "forwarder", "--network", "tiktok"])


class Pipeline:
    def __init__(self, base: str, admin: AdminApi, bootstrap: str, meta: FakeMeta, google: FakeGoogleAds,
                 tiktok: FakeTikTok, env: dict[str, str], log_dir: Path) -> None:
        self.base, self.admin, self.bootstrap = base, admin, bootstrap
        self.meta, self.google, self.tiktok = meta, google, tiktok
        self.env, self.log_dir = env, log_dir
        self.processes: list[ServiceProcess] = []

    def apprefer(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An `apprefer` command with the pipeline's environment, as an SRE would run it."""
        return subprocess.run([sys.executable, "-m", "services.cli", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    def configured_app(self, meta_token: str = "meta-token") -> dict[str, Any]:
        app = self.admin.new_app()
        integrations = {
            "meta": {"settings": {"dataset_id": "ds-1", "bundle_id": "com.example"},
                     "credentials": {"access_token": meta_token}},
            "google_ads": {"settings": {"customer_id": "123-456-7890",
                                        "conversion_actions": {"purchase": CONVERSION_ACTION}},
                           "credentials": {"developer_token": "google-developer-token",
                                           "client_id": "google-client-id", "client_secret": "google-client-secret",
                                           "refresh_token": "google-refresh-token"}},
            "tiktok": {"settings": {"tiktok_app_id": "tt-app-1"}, "credentials": {"access_token": "tiktok-token"}},
        }
        for network, body in integrations.items():
            self.admin.call("PUT", f"/apps/{app['app_id']}/integrations/{network}", body)
        return app

    def send(self, key: str, event: dict[str, Any]) -> None:
        status, _, answer = http_call("POST", f"{self.base}/v1/events", event, {"Authorization": f"Bearer {key}"})
        assert status == 202, answer

    def audit(self, event_id: str) -> list[dict[str, Any]]:
        return list(self.admin.call("GET", f"/audit?event_id={event_id}")["records"])

    def audited(self, event_id: str, network: str, status: str, timeout: float = 60) -> None:
        wait(lambda: any(r["network"] == network and r["status"] == status for r in self.audit(event_id)),
             timeout=timeout, what=f"{event_id} audited {status} for {network}")


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, fresh_bootstrap: str, migrated_pg_url: str, tmp_path: Path
             ) -> Iterator[Pipeline]:
    """Every service against the fakes; `@pytest.mark.parametrize("pipeline", [{VAR: value}], indirect=True)`
    adds environment variables."""
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    with FakeMeta() as meta, FakeGoogleAds() as google, FakeTikTok() as tiktok:
        env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_RETRY_DELAYS="1,2,4,8",
                          APPREFER_META_BASE_URL=meta.base_url, APPREFER_GOOGLE_ADS_BASE_URL=google.base_url,
                          APPREFER_GOOGLE_OAUTH_TOKEN_URL=google.token_url, APPREFER_TIKTOK_BASE_URL=tiktok.base_url,
                          **getattr(request, "param", {}))
        gateway, base = start_gateway(env, tmp_path)
        consumers = [ServiceProcess(args, env, tmp_path).start() for args in SERVICES]
        try:
            running = Pipeline(base, AdminApi(base), fresh_bootstrap, meta, google, tiktok, env, tmp_path)
            running.processes = [gateway, *consumers]
            yield running
        finally:
            for process in consumers:
                process.terminate()
            gateway.terminate()
