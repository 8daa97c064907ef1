"""deploy/compose.yaml's apprefer services run as processes on this host, the way compose would run them in their
containers: each service's command (with the image's entrypoint) and environment (the image's ENV, then the
service's), in the order its `depends_on` conditions say, and its healthcheck run as written.

What a container has that the host has not is mapped, and nothing else is changed:
- the host names of the compose network: `kafka:9092` is the test broker, the `postgres` of DATABASE_URL is the
  test PostgreSQL, `<service>:<port>` is that service's process on this host;
- the ports: every container has its own, processes here share one, so each service's health port (the one
  tests/deploy/checks.py says it serves) is moved to a free one, and its healthcheck's URL with it;
- the listening address 0.0.0.0 (every interface of a container) is loopback here;
- the image's paths: `python` is this virtualenv's, /app/... the repository's, `apprefer` is .venv/bin/apprefer.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.deploy.checks import REPO, Image, health_port_setting, host_path, served_port
from tests.deploy.compose_file import ComposeService, compose_services, healthcheck_argv
from tests.support.ports import free_port
from tests.support.postgres import find_pg_bin_dir

VENV_BIN = Path(sys.executable).parent


class StackError(AssertionError):
    pass


@dataclass
class HostService:
    service: ComposeService
    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int]  # container port -> this host's
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    healthy: bool = False
    last_check: str = ""
    next_check: float = 0.0

    @property
    def name(self) -> str:
        return self.service.name

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        """To its process group: a `sh -c` and the commands it started."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


@dataclass
class HostStack:
    compose: Mapping[str, object]
    image: Image
    bootstrap: str
    database_url: str  # a SQLAlchemy URL of the test PostgreSQL
    log_dir: Path
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # by service: test-only additions
    services: dict[str, HostService] = field(default_factory=dict)
    infrastructure: list[ComposeService] = field(default_factory=list)

    def __post_init__(self) -> None:
        every = compose_services(self.compose)
        apprefer = [service for service in every if service.is_apprefer]
        self.infrastructure = [service for service in every if not service.is_apprefer]
        # Ports first: a service's environment may name another's (APPREFER_HEALTH_TARGETS).
        ports = {service.name: self._ports(service) for service in apprefer}
        addresses = {f"{name}:{inside}": f"127.0.0.1:{outside}"
                     for name, moved in ports.items() for inside, outside in moved.items()}
        addresses.update({f"{service.name}:{port}": self.bootstrap for service in self.infrastructure
                          for port in _listener_ports(service)})
        for service in apprefer:
            env = self._env(service, ports[service.name], addresses)
            argv = [self._host_word(word) for word in service.argv(self.image)]
            self.services[service.name] = HostService(service, argv, env, ports[service.name],
                                                      self.log_dir / f"{service.name}.log")

    # -- the mapping ---------------------------------------------------------------------------------------------

    def _container_env(self, service: ComposeService) -> dict[str, str]:
        return {**self.image.setting_env(), **service.environment()}

    def _ports(self, service: ComposeService) -> dict[int, int]:
        catalog_service = service.runs(self.image)
        if catalog_service is None:
            return {}
        return {served_port(catalog_service, self._container_env(service)): free_port()}

    def _env(self, service: ComposeService, ports: Mapping[int, int], addresses: Mapping[str, str]
             ) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("APPREFER_", "KAFKA_", "DATABASE_"))}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        container_env = self._container_env(service)
        for name, value in container_env.items():
            if name == "DATABASE_URL" and value:
                value = self._database_url(value)
            elif name.endswith("_HOST") and value == "0.0.0.0":
                value = "127.0.0.1"
            else:
                value = _replace_addresses(value, {**addresses, **{f"127.0.0.1:{inside}": f"127.0.0.1:{outside}"
                                                                   for inside, outside in ports.items()}})
            env[name] = value
        catalog_service = service.runs(self.image)
        if catalog_service is not None:
            variable = health_port_setting(catalog_service)
            env[variable] = str(next(iter(ports.values())))  # set even where the container relies on the default
        env.update(self.extra_env.get(service.name, {}))
        return env

    def _database_url(self, value: str) -> str:
        url = make_url(value)
        if url.host not in {service.name for service in self.infrastructure}:
            raise StackError(f"DATABASE_URL {value!r} names no PostgreSQL of the compose file")
        return self.database_url

    def _host_word(self, word: str) -> str:
        if word == "python":
            return sys.executable
        if word == "apprefer":
            return str(VENV_BIN / "apprefer")
        path = host_path(word, self.image)
        return str(path) if path is not None else word

    # -- running -------------------------------------------------------------------------------------------------

    def healthcheck(self, name: str, test: list[str] | None = None) -> tuple[bool, str]:
        """Runs the service's healthcheck (or `test`, for a broken copy) on this host, as compose would in its
        container."""
        host = self.services[name]
        test = test if test is not None else host.service.healthcheck_test()
        if test is None:
            return False, f"{name} has no healthcheck"
        addresses = {f"127.0.0.1:{inside}": f"127.0.0.1:{outside}" for inside, outside in host.ports.items()}
        addresses.update({f"localhost:{inside}": f"127.0.0.1:{outside}" for inside, outside in host.ports.items()})
        argv = [_replace_addresses(self._host_word(word), addresses) for word in healthcheck_argv(test)]
        try:
            done = subprocess.run(argv, env=host.env, cwd=REPO, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return False, f"{' '.join(argv)} timed out"
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    def postgres_healthcheck(self, service: ComposeService) -> tuple[bool, str]:
        """The PostgreSQL container's own check (pg_isready) against the test server, with the server's own
        binaries."""
        test = service.healthcheck_test()
        assert test is not None
        argv = healthcheck_argv(test)
        argv[0] = str(find_pg_bin_dir() / argv[0])
        url = make_url(self.database_url)
        env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432)}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    def up(self, timeout: float = 90.0) -> None:
        """Starts every service once its dependencies meet their conditions (the broker and PostgreSQL are there
        already), until each long-running one is healthy and each one-shot one has completed."""
        deadline = time.monotonic() + timeout
        pending = dict(self.services)
        while True:
            for name, host in list(pending.items()):
                if all(self._met(dependency, condition) for dependency, condition in host.service.depends_on().items()):
                    host.start()
                    del pending[name]
            for host in self.services.values():
                self._watch(host)
            if not pending and all(self._settled(host) for host in self.services.values()):
                return
            if time.monotonic() > deadline:
                raise StackError("not up in time: " + "; ".join(
                    f"{host.name}: {'not started' if host.process is None else host.last_check or 'starting'}"
                    for host in self.services.values() if not self._settled(host)))
            time.sleep(0.2)

    def _met(self, dependency: str, condition: str) -> bool:
        host = self.services.get(dependency)
        if host is None:
            return True  # the broker or PostgreSQL: the test's own, running already
        if condition == "service_completed_successfully":
            return host.exited() == 0
        if condition == "service_healthy":
            return host.healthy
        return host.process is not None

    def _watch(self, host: HostService) -> None:
        if host.process is None or host.healthy:
            return
        code = host.exited()
        one_shot = host.service.runs(self.image) is None
        if code is not None and (code != 0 or not one_shot):
            raise StackError(f"{host.name} (`{' '.join(host.argv)}`) exited with {code}:\n{host.log_tail()}")
        # The healthcheck is a process of its own: run it once the port listens, not at every poll.
        if not one_shot and time.monotonic() >= host.next_check:
            host.next_check = time.monotonic() + 0.5
            if all(_listens(port) for port in host.ports.values()):
                host.healthy, host.last_check = self.healthcheck(host.name)
            else:
                host.last_check = f"nothing listens on {', '.join(map(str, host.ports.values()))} yet"

    def _settled(self, host: HostService) -> bool:
        return host.exited() == 0 if host.service.runs(self.image) is None else host.healthy

    def down(self, timeout: float = 20.0) -> None:
        """SIGTERM to every process group at once (each consumer finishes its batch), SIGKILL to what is left
        after `timeout`."""
        running = [host for host in self.services.values() if host.exited() is None and host.process is not None]
        for host in running:
            host.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for host in running:
            assert host.process is not None
            try:
                host.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                host.signal(signal.SIGKILL)
                host.process.wait(timeout=10)


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _listener_ports(service: ComposeService) -> set[int]:
    listeners = service.environment().get("KAFKA_ADVERTISED_LISTENERS", "")
    return {int(port) for port in re.findall(rf"//{re.escape(service.name)}:(\d+)", listeners)}


def _replace_addresses(value: str, addresses: Mapping[str, str]) -> str:
    if not addresses:
        return value
    pattern = re.compile("|".join(rf"(?<![\w.-]){re.escape(address)}(?!\d)" for address in addresses))
    return pattern.sub(lambda match: addresses[match.group(0)], value)
