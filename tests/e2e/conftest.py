"""Fixtures for tests that run the whole pipeline against fake networks (tests/fakes/)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.catalog import Service, services
from shared.kafka.topics import create_topics
from shared.networks.registry import registry
from shared.networks.spec import Feed
from tests.fakes import FakeGoogleAds, FakeMeta, FakeServer, FakeTikTok, fake_class
from tests.support.pipeline import REPO, AdminApi, ServiceProcess, http_call, service_env, start_edge
from tests.support.pipeline import wait_until as wait
from tests.support.ports import free_port

CONVERSION_ACTION = "customers/1234567890/conversionActions/99"
# The catalog's consumers for app events: no SKAN decoder, no forwarder of SKAN postbacks (tests/e2e/test_skan.py
# runs those), a forwarder per network fed conversions. The gateway and the admin service are started apart
# (start_edge), on free ports.
SKAN_FED = {f"forwarder-{spec.name}" for spec in registry().fed_by(Feed.SKAN)}
SERVICES: tuple[Service, ...] = tuple(service for service in services()
                                      if service.name not in {"gateway", "admin", "skan", *SKAN_FED})


F = TypeVar("F", bound=FakeServer)


class Pipeline:
    def __init__(self, base: str, admin: AdminApi, bootstrap: str, fakes: dict[str, FakeServer],
                 env: dict[str, str], log_dir: Path) -> None:
        # `base` is the gateway's URL; `admin` the admin API's client, at the admin service's own URL.
        self.base, self.admin, self.bootstrap = base, admin, bootstrap
        self.fakes = fakes  # by network: every network fed conversions that has a fake in tests/fakes
        self.env, self.log_dir = env, log_dir
        self.processes: list[ServiceProcess] = []

    @property
    def meta(self) -> FakeMeta:
        return self._fake("meta", FakeMeta)

    @property
    def google(self) -> FakeGoogleAds:
        return self._fake("google_ads", FakeGoogleAds)

    @property
    def tiktok(self) -> FakeTikTok:
        return self._fake("tiktok", FakeTikTok)

    def _fake(self, network: str, kind: type[F]) -> F:
        fake = self.fakes[network]
        assert isinstance(fake, kind)
        return fake

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
    """Every service of the catalog for app events against the networks' fakes;
    `@pytest.mark.parametrize("pipeline", [{VAR: value}], indirect=True)` adds environment variables."""
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    fakes = {spec.name: fake() for spec in registry().fed_by(Feed.CONVERSIONS) if (fake := fake_class(spec.name))}
    for fake in fakes.values():
        fake.start()
    urls = {f"{registry().get(name).env_prefix}BASE_URL": fake.base_url for name, fake in fakes.items()}
    urls.update({f"{registry().get(name).env_prefix}TOKEN_URL": f"{fake.base_url}/token"
                 for name, fake in fakes.items() if registry().get(name).token_request is not None})
    try:
        env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_RETRY_DELAYS="1,2,4,8", **urls,
                          **getattr(request, "param", {}))
        # `@pytest.mark.forwarders("meta")`: only those networks' forwarders (each process costs a second of
        # CPU to start, and the suite has a time budget); by default every network's.
        marker = request.node.get_closest_marker("forwarders")
        wanted = {f"forwarder-{name}" for name in marker.args} if marker else None
        chosen = [service for service in SERVICES
                  if wanted is None or not service.name.startswith("forwarder-") or service.name in wanted]
        # Each consumer serves /readyz and /metrics on a port of its own, and the admin service's Health page asks
        # every process of this pipeline (APPREFER_HEALTH_TARGETS), as a deployment has it.
        edge_ports = (free_port(), free_port())
        health_ports = {service.name: free_port() for service in chosen}
        targets = {"gateway": edge_ports[0], "admin": edge_ports[1], **health_ports}
        env.setdefault("APPREFER_HEALTH_TARGETS",
                       ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in targets.items()))
        edge = start_edge(env, tmp_path, edge_ports)
        consumers = [ServiceProcess(["run", *service.command],
                                    {"APPREFER_METRICS_PORT": str(health_ports[service.name]), **env},
                                    tmp_path).start() for service in chosen]
        try:
            running = Pipeline(edge.base, edge.admin, fresh_bootstrap, fakes, env, tmp_path)
            running.processes = [*edge.processes, *consumers]
            yield running
        finally:
            for process in consumers:
                process.terminate()
            edge.terminate()
    finally:
        for fake in fakes.values():
            fake.stop()
