"""The real pieces a benchmark runs against: PostgreSQL, the Tansu broker, the services as processes.

Built on the test harness (tests/support/), so the bench starts things exactly the way the
end-to-end tests do: `python -m services.cli run <service>` with the environment of `service_env`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.db.migrate import upgrade
from shared.kafka.topics import create_topics
from tests.support.broker import BrokerProcess
from tests.support.pipeline import REPO, AdminApi, ServiceProcess, service_env, wait_ready
from tests.support.ports import free_port, wait_for_port
from tests.support.postgres import PostgresProcess, create_database

OUT = REPO / "bench" / "out"
LOGS = OUT / "logs"
META_TOKEN = "meta-token"
META_DATASET = "ds-1"
TOPIC_PARTITIONS = 6  # the product default (APPREFER_TOPIC_PARTITIONS)


def psycopg_url(sqlalchemy_url: str) -> str:
    """postgresql+psycopg://... -> postgresql://... for psycopg.connect."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def postgres_server() -> Iterator[PostgresProcess]:
    with PostgresProcess() as pg:
        yield pg


def postmaster_pid(pg: PostgresProcess) -> int:
    """The postmaster runs detached (pg_ctl), so it is found through its pid file."""
    try:
        return int((pg.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return 0


def migrated_database(server_url: str, purpose: str) -> str:
    url = create_database(server_url, f"bench_{purpose}_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    return url


def broker_pid(broker: BrokerProcess) -> int:
    """The broker's process id, for CPU accounting (the test harness keeps its Popen private)."""
    process = getattr(broker, "_proc", None)
    return process.pid if process is not None else 0


@contextmanager
def broker_with_topics() -> Iterator[BrokerProcess]:
    """A fresh in-memory broker per benchmark, so no benchmark sees another one's records."""
    with BrokerProcess() as broker:
        create_topics(broker.bootstrap, partitions=TOPIC_PARTITIONS, replication=1)
        yield broker


class Services:
    """Service processes started with one environment; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, env: dict[str, str]) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.processes: list[tuple[str, ServiceProcess]] = []

    def start(self, label: str, args: list[str], **extra_env: str) -> ServiceProcess:
        process = ServiceProcess(args, {**self.env, **extra_env}, LOGS).start()
        self.processes.append((label, process))
        return process

    def start_gateway(self) -> tuple[ServiceProcess, str]:
        port = free_port()
        process = self.start("gateway", ["run", "gateway"], APPREFER_GATEWAY_PORT=str(port))
        base = f"http://127.0.0.1:{port}"
        wait_ready(process, base, "gateway")
        return process, base

    def start_admin(self, gateway_base: str | None = None) -> tuple[ServiceProcess, AdminApi]:
        """The admin service (label "admin"), its tracking links pointing at `gateway_base` when given. Stop it
        (`stop({"admin"})`) once the setup is done, so that it is not in the measured machine."""
        process, base = self._start_admin(gateway_base)
        wait_ready(process, base, "admin")
        return process, AdminApi(base)

    def start_edge(self) -> tuple[ServiceProcess, str, AdminApi]:
        """The gateway and the admin service, started together: (the gateway, its URL, the admin API)."""
        port = free_port()
        gateway = self.start("gateway", ["run", "gateway"], APPREFER_GATEWAY_PORT=str(port))
        base = f"http://127.0.0.1:{port}"
        admin, admin_base = self._start_admin(base)
        wait_ready(gateway, base, "gateway")
        wait_ready(admin, admin_base, "admin")
        return gateway, base, AdminApi(admin_base)

    def _start_admin(self, gateway_base: str | None) -> tuple[ServiceProcess, str]:
        port = free_port()
        extra = {"APPREFER_ADMIN_PORT": str(port)}
        if gateway_base is not None:
            extra["APPREFER_PUBLIC_BASE_URL"] = gateway_base
        return self.start("admin", ["run", "admin"], **extra), f"http://127.0.0.1:{port}"

    def pids(self) -> list[tuple[str, int]]:
        return [(label, p.process.pid) for label, p in self.processes if p.process is not None]

    def assert_alive(self) -> None:
        for _, process in self.processes:
            process.assert_alive()

    def stop(self, labels: set[str] | None = None) -> None:
        chosen = [(lbl, p) for lbl, p in self.processes if labels is None or lbl in labels]
        for _, process in chosen:
            if process.process is not None and process.process.poll() is None:
                process.process.terminate()
        for _, process in chosen:
            try:
                process.terminate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes = [(lbl, p) for lbl, p in self.processes if (lbl, p) not in chosen]


TRY_PREFIX = "BENCH_ENV_"


@contextmanager
def services(bootstrap: str, database_url: str, **extra_env: str) -> Iterator[Services]:
    # BENCH_ENV_<NAME>=value sets <NAME> for every service: for trying settings (e.g. linger.ms) under load.
    tried = {name.removeprefix(TRY_PREFIX): value for name, value in os.environ.items() if name.startswith(TRY_PREFIX)}
    running = Services(service_env(bootstrap, database_url, **{**extra_env, **tried}))
    try:
        yield running
    finally:
        running.stop()


class ChildProcess:
    """A bench helper (`python -m bench.<module>`) in its own process; it prints `READY <port>` once up."""

    def __init__(self, module: str, *args: str, cpu: int | None = None) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = LOGS / f"{module.rsplit('.', 1)[-1]}-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", module, "--port", str(self.port), *args]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1", self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{module} did not start:\n{self.log_path.read_text()[-3000:]}") from None
        self.base_url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def child(module: str, *args: str, cpu: int | None = None) -> Iterator[ChildProcess]:
    process = ChildProcess(module, *args, cpu=cpu)
    try:
        yield process
    finally:
        process.stop()


def create_app(admin: AdminApi, meta_base_url: str | None = None, dataset_id: str = META_DATASET) -> dict[str, Any]:
    """An Android app with a live key; with `meta_base_url`, a Meta integration sending to `dataset_id` that
    takes every event (installs mapped to MobileAppInstall), so each benchmark event crosses every stage."""
    app = admin.call("POST", "/apps", {"name": "Bench app", "platform": "android",
                                       "store_url": "https://play.google.com/store/apps/details?id=com.example"},
                     expect=201)
    app["live_key"] = admin.call("POST", f"/apps/{app['app_id']}/keys", {"mode": "live"}, expect=201)["key"]
    if meta_base_url is not None:
        admin.call("PUT", f"/apps/{app['app_id']}/integrations/meta", {
            "settings": {"dataset_id": dataset_id, "bundle_id": "com.example"},
            "credentials": {"access_token": META_TOKEN},
            "event_map": {"install": "MobileAppInstall"},
        })
    return app


def run_alone(prog: str, bench: Callable[..., dict[str, Any]], durations: Any, quick: Any) -> None:
    """A PostgreSQL bench run on its own (`python -m bench.<name> [--quick]`): a throwaway server, the CPU meter,
    progress on stderr, the results as JSON on stdout. `bench(pg_url, meter, durations, log)` is the bench."""
    from bench.machine import CpuMeter

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    meter = CpuMeter()
    with postgres_server() as pg:
        meter.label(postmaster_pid(pg), "postgres")
        results = bench(pg.url, meter, quick if args.quick else durations, log)
    print(json.dumps(results))
