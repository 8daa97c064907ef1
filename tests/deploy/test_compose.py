"""deploy/compose.yaml: it agrees with the code (commands, variables, health endpoints, start order), its
services run on this host as compose would run them and reach their health, one event goes from the gateway to
the audit log, and deliberately broken copies of it are caught. Where Docker runs, the real stack too."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.catalog import services
from shared.networks.registry import registry
from shared.settings import Settings, parse_health_targets
from tests.deploy.checks import image
from tests.deploy.compose_file import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ComposeService,
    compose_services,
    example_variables,
    load,
    problems,
    read_env_file,
    referenced_variables,
)
from tests.deploy.host_stack import HostStack
from tests.fakes import FakeMeta, FakeServer, fake_class
from tests.support.pipeline import http_call, wait_until

COMPOSE_TEXT = COMPOSE_FILE.read_text()


def compose(text: str = COMPOSE_TEXT) -> dict[str, Any]:
    return load(text, example_variables())


def broken(original: str, replacement: str) -> str:
    """A copy of the compose file with one deliberate mistake (the original text must be there to break)."""
    assert original in COMPOSE_TEXT, f"{original!r} is no longer in {COMPOSE_FILE}: update this test"
    return COMPOSE_TEXT.replace(original, replacement)


def test_compose_file_agrees_with_the_code() -> None:
    assert problems(compose(), image()) == []


def test_env_example_documents_every_variable_and_holds_no_secret() -> None:
    example = read_env_file(ENV_EXAMPLE)
    referenced = referenced_variables(COMPOSE_TEXT)
    assert referenced == set(example), "compose.yaml and .env.example name different variables"
    required = {name for name in referenced if f"${{{name}:?" in COMPOSE_TEXT}
    assert required == {"POSTGRES_PASSWORD", "APPREFER_SECRET_KEY", "APPREFER_ADMIN_TOKEN"}
    assert all(example[name] == "" for name in required), "the example must leave the secrets to be filled in"


def test_without_the_secrets_compose_refuses_to_start() -> None:
    from tests.deploy.compose_file import InterpolationError

    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        load(COMPOSE_TEXT, read_env_file(ENV_EXAMPLE))


def settings_problems(compose_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What shared/settings.py refuses in each container's environment (the image's, then the service's)."""
    for name in list(os.environ):
        if name.startswith(("APPREFER_", "KAFKA_", "DATABASE_")):
            monkeypatch.delenv(name)
    found = []
    for service in compose_services(compose_file):
        if not service.is_apprefer:
            continue
        with monkeypatch.context() as patch:
            for name, value in {**image().setting_env(), **service.environment()}.items():
                patch.setenv(name, value)
            try:
                Settings()
            except ValidationError as exc:
                found += [f"{service.name}: {error['loc']}: {error['msg']}" for error in exc.errors()]
    return found


def test_every_service_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_problems(compose(), monkeypatch) == []


def test_a_setting_with_a_wrong_value_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    found = settings_problems(compose(broken('APPREFER_GATEWAY_PORT: "8080"', 'APPREFER_GATEWAY_PORT: "80 80"')),
                              monkeypatch)
    assert any(problem.startswith("gateway: ('APPREFER_GATEWAY_PORT',)") for problem in found), found


BROKEN_COPIES = [
    pytest.param('["run", "gateway"]', '["run", "gatewy"]', "invalid choice: 'gatewy'", id="command typo"),
    pytest.param('"--network", "tiktok"', '"--network", "tiktak"', "invalid choice: 'tiktak'", id="unknown network"),
    pytest.param("apprefer topics create", "apprefer topic create", "invalid choice: 'topic'", id="init typo"),
    pytest.param('APPREFER_GATEWAY_PORT: "8080"', 'APPREFER_GATEWAY_PROT: "8080"',
                 "APPREFER_GATEWAY_PROT is no apprefer setting", id="unknown variable"),
    pytest.param("KAFKA_BOOTSTRAP_SERVERS: kafka:9092", "KAFKA_BOOTSTRAP_SERVER: kafka:9092",
                 "KAFKA_BOOTSTRAP_SERVER is no apprefer setting", id="variable typo"),
    pytest.param("9100/readyz", "9100/ready", "9100/ready is not attribution's readiness endpoint /readyz",
                 id="wrong health path"),
    pytest.param('"http://127.0.0.1:8080/readyz"', '"http://127.0.0.1:8081/readyz"',
                 "asks port 8081, but gateway serves /healthz and /readyz on 8080", id="wrong health port"),
    pytest.param('APPREFER_METRICS_PORT: "9100"', 'APPREFER_METRICS_PORT: "0"', "serves no health endpoint",
                 id="consumer health off"),
    pytest.param('"127.0.0.1:8081:8081"', '"8081:8081"', "must stay on 127.0.0.1", id="admin published"),
    pytest.param("APPREFER_METRICS_HOST: 0.0.0.0", "APPREFER_METRICS_HOST: 127.0.0.1",
                 "attribution: attribution listens on 127.0.0.1 (APPREFER_METRICS_HOST)", id="consumer on loopback"),
    pytest.param("APPREFER_ADMIN_HOST: 0.0.0.0", "APPREFER_ADMIN_HOST: localhost",
                 "admin: admin listens on localhost (APPREFER_ADMIN_HOST)", id="admin on loopback"),
    pytest.param(",\n        forwarder-tiktok=http://forwarder-tiktok:9100", "",
                 "admin: forwarder-tiktok is missing from APPREFER_HEALTH_TARGETS", id="target missing"),
    pytest.param("skan=http://skan:9100", "skan=http://skan:9200",
                 "skan=http://skan:9200: port 9200, but skan serves /readyz and /metrics on 9100", id="target port"),
    pytest.param("audit=http://audit:9100", "audit=http://auditor:9100",
                 "audit=http://auditor:9100: auditor is no service of the compose file", id="target host"),
    pytest.param("fanout=http://fanout:9100", "fanout=http://skan:9100",
                 "fanout=http://skan:9100: skan runs skan, not fanout", id="target swapped"),
    pytest.param("admin=http://127.0.0.1:8081", "admin=http://127.0.0.1:8080",
                 "admin=http://127.0.0.1:8080: port 8080, but admin serves", id="admin target port"),
    pytest.param("forwarder-meta=http://forwarder-meta:9100", "forwarder-meta=http://127.0.0.1:9100",
                 "127.0.0.1 is the admin container's own loopback, where forwarder-meta does not run",
                 id="target on loopback"),
    pytest.param("forwarder-meta=http://", "forwarder-metaa=http://",
                 "APPREFER_HEALTH_TARGETS names forwarder-metaa, no service of services/catalog.py",
                 id="target name"),
    pytest.param("condition: service_completed_successfully", "condition: service_started",
                 "does not wait for init to complete successfully", id="no wait for init"),
    pytest.param("@postgres:5432/apprefer", "@postgres:5432/appreffer", "DATABASE_URL is not the compose",
                 id="wrong database"),
    pytest.param("image: apache/kafka:4.1.0", "image: apache/kafka:latest", "kafka: image 'apache/kafka:latest' is not",
                 id="unpinned broker"),
    pytest.param('"--network", "snapchat"', '"--network", "meta"',
                 "forwarder-snapchat (`apprefer run forwarder --network snapchat`) is missing", id="forwarder missing"),
]


@pytest.mark.parametrize(("original", "replacement", "complaint"), BROKEN_COPIES)
def test_a_broken_compose_file_is_caught(original: str, replacement: str, complaint: str) -> None:
    try:
        found = problems(compose(broken(original, replacement)), image())
    except (KeyError, TypeError) as exc:  # a copy too broken to read is caught too
        found = [repr(exc)]
    assert any(complaint in problem for problem in found), found


# -- run on this host --------------------------------------------------------------------------------------------


@pytest.fixture
def fake_networks() -> Iterator[dict[str, FakeServer]]:
    """A fake of every registered network: the forwarders must never reach a real one from a test."""
    fakes = {name: kind() for name in registry().names if (kind := fake_class(name)) is not None}
    for server in fakes.values():
        server.start()
    try:
        yield fakes
    finally:
        for server in fakes.values():
            server.stop()


def network_urls(fakes: dict[str, FakeServer]) -> dict[str, dict[str, str]]:
    """For each forwarder: its network's URLs pointed at the fake (or at a closed port, for a network without)."""
    env: dict[str, dict[str, str]] = {}
    for spec in registry().networks:
        base = fakes[spec.name].base_url if spec.name in fakes else "http://127.0.0.1:9"
        urls = {f"{spec.env_prefix}BASE_URL": base}
        if spec.token_request is not None:
            urls[f"{spec.env_prefix}TOKEN_URL"] = f"{base}/token"
        env[f"forwarder-{spec.name.replace('_', '-')}"] = urls
    return env


@pytest.mark.slow
def test_compose_services_run_on_the_host(fresh_bootstrap: str, empty_pg_url: str, tmp_path: Path,
                                         fake_networks: dict[str, FakeServer]) -> None:
    stack = HostStack(compose(), image(), fresh_bootstrap, empty_pg_url, tmp_path, network_urls(fake_networks))
    assert set(network_urls(fake_networks)) <= set(stack.services), "a forwarder is named differently in compose"
    try:
        stack.up(timeout=90)

        # Every healthcheck, as written in the compose file: the apprefer services' and PostgreSQL's. Kafka's is
        # the broker image's own script, which needs its JVM: only checked to exist (compose_file.problems).
        for name, host in stack.services.items():
            if host.service.healthcheck_test() is not None:
                healthy, detail = stack.healthcheck(name)
                assert healthy, f"{name}: {detail}"
        postgres = next(service for service in stack.infrastructure if service.name == "postgres")
        healthy, detail = stack.postgres_healthcheck(postgres)
        assert healthy, detail

        # The dashboard's Health page: every service of the catalog at the address the admin service is given.
        targets = parse_health_targets(stack.services["admin"].env["APPREFER_HEALTH_TARGETS"])
        assert set(targets) == {service.name for service in services()}
        for name, url in targets.items():
            for path in ("/readyz", "/metrics"):
                status, _, answer = http_call("GET", f"{url}{path}")
                assert status == 200, f"{name}: {url}{path}: {status} {answer!r}"

        meta = fake_networks["meta"]
        assert isinstance(meta, FakeMeta)
        event_id = deliver_one_event(stack)
        assert event_id in {event["event_id"] for event in meta.events}, "the fake Meta did not receive it"

        # A broken copy's health path fails against the running service, not only on paper.
        wrong = ComposeService("audit", compose(broken("9100/readyz", "9100/ready"))["services"]["audit"])
        healthy, detail = stack.healthcheck("audit", wrong.healthcheck_test())
        assert not healthy and "404" in detail, detail
    finally:
        stack.down()


def deliver_one_event(stack: HostStack) -> str:
    """README's walk-through, shortened: an app, its live key and a Meta integration through the admin API, one
    purchase to the gateway, and its `delivered` row in the audit log."""
    admin, gateway = stack.services["admin"], stack.services["gateway"]
    admin_url = f"http://127.0.0.1:{next(iter(admin.ports.values()))}/admin/v1"
    gateway_url = f"http://127.0.0.1:{next(iter(gateway.ports.values()))}"
    headers = {"Authorization": f"Bearer {admin.env['APPREFER_ADMIN_TOKEN']}"}

    def call(method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, _, answer = http_call(method, f"{admin_url}{path}", body, headers)
        assert status == expect, f"{method} {path}: {status} {answer}"
        return answer

    app_id = call("POST", "/apps", {"name": "Deploy test", "platform": "android",
                                    "store_url": "https://play.google.com/store/apps/details?id=com.example"},
                  expect=201)["app_id"]
    key = call("POST", f"/apps/{app_id}/keys", {"mode": "live"}, expect=201)["key"]
    call("PUT", f"/apps/{app_id}/integrations/meta",
         {"settings": {"dataset_id": "ds-1", "forward_unattributed": True},
          "credentials": {"access_token": "meta-token"}})
    event_id = f"deploy-{uuid.uuid4().hex}"
    status, _, answer = http_call("POST", f"{gateway_url}/v1/events", {
        "event_id": event_id, "event_name": "purchase", "event_time": int(time.time()),
        "device": {"device_id": "d1", "os": "android", "gaid": str(uuid.uuid4())},
        "revenue": {"amount": 4.99, "currency": "USD"}}, {"Authorization": f"Bearer {key}"})
    assert status == 202, answer

    def delivered() -> bool:
        records = call("GET", f"/audit?event_id={event_id}")["records"]
        assert not any(r["status"] in ("rejected", "dead_lettered") for r in records), records
        return any(r["network"] == "meta" and r["status"] == "delivered" for r in records)

    wait_until(delivered, timeout=45, what=f"{event_id} audited delivered for meta", interval=0.3)
    return event_id


@pytest.mark.slow
def test_a_mistyped_command_fails_when_run(tmp_path: Path) -> None:
    """The broken copy's gateway, started as compose would start it, exits at once with the parser's complaint
    (no broker or database needed to get that far)."""
    stack = HostStack(compose(broken('["run", "gateway"]', '["run", "gatewy"]')), image(),
                      "127.0.0.1:9", "postgresql+psycopg://nobody@127.0.0.1:9/none", tmp_path)
    gateway = stack.services["gateway"]
    gateway.start()
    try:
        assert gateway.process is not None
        assert gateway.process.wait(timeout=30) == 2
        assert "invalid choice: 'gatewy'" in gateway.log_tail()
    finally:
        stack.down()


# -- the real stack, where Docker runs ---------------------------------------------------------------------------


def docker_unavailable() -> str | None:
    """Why the real stack cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no `docker` command"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
        if info.returncode != 0:
            return f"`docker info` failed: {(info.stderr.strip().splitlines() or ['?'])[-1]}"
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer"
    if plugin.returncode != 0:
        return "no `docker compose` plugin"
    return None


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first build downloads the base images and every dependency
def test_compose_stack_in_docker(tmp_path: Path) -> None:
    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(f"Docker is not usable here ({reason}), so the real compose stack was not started; "
                    "test_compose_services_run_on_the_host ran its services' commands on this host instead")
    from testcontainers.compose import DockerCompose

    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in example_variables().items()))
    token = example_variables()["APPREFER_ADMIN_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    stack = DockerCompose(COMPOSE_FILE.parent, compose_file_name=COMPOSE_FILE.name, env_file=str(env_file),
                          build=True, wait=True)
    try:
        stack.start()  # `up --build --wait`: every healthcheck has passed when it returns
        admin = "http://127.0.0.1:8081/admin/v1"
        status, _, app = http_call("POST", f"{admin}/apps", {"name": "Docker test", "platform": "android",
                                   "store_url": "https://play.google.com/store/apps/details?id=com.example"},
                                   headers)
        assert status == 201, app
        _, _, key = http_call("POST", f"{admin}/apps/{app['app_id']}/keys", {"mode": "test"}, headers)
        status, _, answer = http_call("PUT", f"{admin}/apps/{app['app_id']}/integrations/meta",
                                      {"settings": {"dataset_id": "ds-1"}, "credentials": {"access_token": "t"}},
                                      headers)
        assert status == 200, answer
        # A test key: audited `sandbox` at fanout, so nothing leaves for the real Meta.
        event_id = f"docker-{uuid.uuid4().hex}"
        status, _, answer = http_call("POST", "http://127.0.0.1:8080/v1/events", {
            "event_id": event_id, "event_name": "purchase", "event_time": int(time.time()),
            "device": {"device_id": "d1", "os": "android"}}, {"Authorization": f"Bearer {key['key']}"})
        assert status == 202, answer
        wait_until(lambda: any(r["status"] == "sandbox" for r in http_call(
            "GET", f"{admin}/audit?event_id={event_id}", None, headers)[2]["records"]),
                   timeout=120, what=f"{event_id} audited sandbox", interval=1)
    finally:
        stack.stop()  # `down --volumes`, also after a start that failed half-way
