"""Helpers for tests that drive the real services: processes, HTTP, and reading topics back."""

from __future__ import annotations

import atexit
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from shared.avro import codec
from tests.support.contract import check_answer
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"
SECRET_KEY = "test-secret-key"


def http_call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """One request, no redirects followed; JSON bodies decoded."""
    assert url.startswith("http://")
    host_port, _, path = url[len("http://"):].partition("/")
    host, port = host_port.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, "/" + path, body=payload, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    response_headers = {k.lower(): v for k, v in response.getheaders()}
    if response_headers.get("content-type", "").startswith("application/json"):
        return response.status, response_headers, json.loads(data)
    return response.status, response_headers, data


def read_topic(bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool],
               timeout: float = 30.0) -> list[dict[str, Any]]:
    """Reads a topic from the start (no consumer group: assign, so no join delay) until `until`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met in {timeout}s; {len(records)} records read")
            for message in consumer.consume(500, 0.2):
                if message.error():
                    continue
                name, value = codec().decode(message.value())
                records.append({"schema": name, "value": value, "key": message.key(),
                                "headers": dict(message.headers() or [])})
        return records
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    """Records on the topic, counted by reading them: the bundled broker reports a partition's high
    watermark one produce request late, so watermarks can undercount."""
    from tests.support.topic_reading import read_all

    return len(read_all(bootstrap, topic))


def service_env(bootstrap: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPREFER_", "KAFKA_", "DATABASE_"))}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "APPREFER_ADMIN_TOKEN": ADMIN_TOKEN,
        "APPREFER_SECRET_KEY": SECRET_KEY,
        "APPREFER_LOG_LEVEL": "WARNING",
        "APPREFER_PRUNE_INTERVAL_SECONDS": "0",  # the audit service's hourly prune: tests that want it say so
    })
    env.update(extra)
    return env


_STARTED: list[subprocess.Popen[bytes]] = []


@atexit.register
def _end_leftovers() -> None:
    """No service outlives the test run: one a failed fixture or test left running is killed when pytest (or its
    xdist worker) exits."""
    for process in _STARTED:
        if process.poll() is None:
            process.kill()


class ServiceProcess:
    """`apprefer run <service>` (or any apprefer command) as a child process, output to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{'-'.join(args)}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", *self.args], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        _STARTED[:] = [process for process in _STARTED if process.poll() is None]
        _STARTED.append(self.process)
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.args} exited with {self.process.returncode}:\n{self.log_tail()}")


def start_gateway(env: dict[str, str], log_dir: Path) -> tuple[ServiceProcess, str]:
    port = free_port()
    process = ServiceProcess(["run", "gateway"], {**env, "APPREFER_GATEWAY_PORT": str(port)}, log_dir).start()
    base = f"http://127.0.0.1:{port}"
    wait_ready(process, base, "gateway")
    return process, base


def start_admin(env: dict[str, str], log_dir: Path, gateway_base: str | None = None) -> tuple[ServiceProcess, str]:
    """`apprefer run admin` on a free port; its tracking links point at `gateway_base` when given."""
    port = free_port()
    extra = {"APPREFER_ADMIN_PORT": str(port)}
    if gateway_base:
        extra["APPREFER_PUBLIC_BASE_URL"] = gateway_base
    process = ServiceProcess(["run", "admin"], {**env, **extra}, log_dir).start()
    base = f"http://127.0.0.1:{port}"
    wait_ready(process, base, "admin")
    return process, base


@dataclass
class Edge:
    """The gateway (ingest, the public port) and the admin service (the management API), as a deployment has
    them: `base` is the gateway's URL, `admin` the admin API's client."""

    gateway: ServiceProcess
    admin_service: ServiceProcess
    base: str
    admin_base: str

    @property
    def admin(self) -> AdminApi:
        return AdminApi(self.admin_base)

    @property
    def processes(self) -> list[ServiceProcess]:
        return [self.gateway, self.admin_service]

    def assert_alive(self) -> None:
        for process in self.processes:
            process.assert_alive()

    def terminate(self) -> None:
        for process in self.processes:
            process.terminate()


def start_edge(env: dict[str, str], log_dir: Path, ports: tuple[int, int] | None = None) -> Edge:
    """The gateway and the admin service, started together (both are waited for), on `ports` (gateway, admin) or
    free ones."""
    gateway_port, admin_port = ports or (free_port(), free_port())
    base, admin_base = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{admin_port}"
    gateway = ServiceProcess(["run", "gateway"], {**env, "APPREFER_GATEWAY_PORT": str(gateway_port)}, log_dir).start()
    admin = ServiceProcess(["run", "admin"], {**env, "APPREFER_ADMIN_PORT": str(admin_port),
                                              "APPREFER_PUBLIC_BASE_URL": base}, log_dir).start()
    edge = Edge(gateway, admin, base, admin_base)
    try:
        wait_ready(gateway, base, "gateway")
        wait_ready(admin, admin_base, "admin")
    except BaseException:
        edge.terminate()  # one that did not come up must not leave the other running after the test
        raise
    return edge


def wait_ready(process: ServiceProcess, base: str, name: str, timeout: float = 30) -> None:
    """Until the service at `base` answers its /readyz with 200; AssertionError (with its log) if it exits."""
    wait_until(lambda: _ready(base, process), timeout=timeout, what=f"{name} /readyz")


def _ready(base: str, process: ServiceProcess) -> bool:
    process.assert_alive()
    try:
        return http_call("GET", f"{base}/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class AdminApi:
    def __init__(self, base: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, headers, payload = http_call(method, f"{self.base}/admin/v1{path}", body, self.headers)
        assert status == expect, f"{method} {path}: {status} {payload}"
        check_answer(self.base, http_call, method, f"/admin/v1{path}", status, headers, payload)
        return payload

    def new_app(self, platform: str = "android", **fields: Any) -> dict[str, Any]:
        store_url = "https://play.google.com/store/apps/details?id=com.example" if platform == "android" else (
            "https://apps.apple.com/app/id123")
        app = self.call("POST", "/apps", {"name": "Test app", "platform": platform, "store_url": store_url,
                                          **fields}, expect=201)
        app["live_key"] = self.call("POST", f"/apps/{app['app_id']}/keys", {"mode": "live"}, expect=201)["key"]
        app["test_key"] = self.call("POST", f"/apps/{app['app_id']}/keys", {"mode": "test"}, expect=201)["key"]
        return app
