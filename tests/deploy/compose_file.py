"""deploy/compose.yaml read as docker compose reads it (YAML with its anchors and merge keys, `${VAR}`
interpolation from deploy/.env), and its static checks against the code (tests/deploy/checks.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url

from services.catalog import ADMIN, GATEWAY, Service
from tests.deploy.checks import (
    DEPLOY,
    HEALTH_TARGETS,
    Image,
    apprefer_invocations,
    command_problems,
    coverage_problems,
    first,
    health_targets_problems,
    health_url_problems,
    is_loopback,
    listen_problems,
    one_shot_problems,
    served_port,
    service_run_by,
    urls_in,
    variable_problems,
)

COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
APPREFER_IMAGE = "apprefer:"  # the image compose builds from deploy/Dockerfile
LONG_RUNNING_RESTARTS = {"always", "unless-stopped", "on-failure"}

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines, as compose reads .env (comments and blank lines skipped)."""
    variables = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            variables[name.strip()] = value.strip()
    return variables


def example_variables() -> dict[str, str]:
    """deploy/.env.example with each secret it leaves empty filled in, as its first lines ask."""
    return {name: value or f"test-{name.lower().replace('_', '-')}"
            for name, value in read_env_file(ENV_EXAMPLE).items()}


class InterpolationError(ValueError):
    pass


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `$VAR`, `$$`."""

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in variables and (variables[name] != "" or op not in (":-", ":?"))
        if present:
            return variables[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise InterpolationError(f"${{{name}}}: {arg}")
        return ""

    return _VARIABLE.sub(value, text)


def referenced_variables(text: str) -> set[str]:
    return {m.group("name") or m.group("bare") for m in _VARIABLE.finditer(text) if m.group(0) != "$$"}


def _interpolated(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolated(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, variables) for key, value in node.items()}
    return node


def load(text: str, variables: Mapping[str, str]) -> dict[str, Any]:
    """Parsed (anchors and `<<` merges resolved by YAML itself), then interpolated, as compose does."""
    document = yaml.safe_load(text)
    assert isinstance(document, dict), "the compose file is not a mapping"
    return dict(_interpolated(document, variables))


@dataclass
class ComposeService:
    name: str
    spec: dict[str, Any]

    @property
    def is_apprefer(self) -> bool:
        return str(self.spec.get("image", "")).startswith(APPREFER_IMAGE)

    def argv(self, image: Image) -> list[str]:
        """What the container runs: its entrypoint (or the image's) and command (or the image's)."""
        entrypoint = _words(self.spec["entrypoint"]) if "entrypoint" in self.spec else image.entrypoint
        command = _words(self.spec["command"]) if "command" in self.spec else (
            [] if "entrypoint" in self.spec else image.cmd)
        return [*entrypoint, *command]

    def environment(self) -> dict[str, str]:
        env = self.spec.get("environment") or {}
        if isinstance(env, list):  # the `- NAME=value` form
            env = dict(item.partition("=")[::2] for item in env)
        return {str(name): "" if value is None else str(value) for name, value in env.items()}

    def runs(self, image: Image) -> Service | None:
        """The catalog's service this container runs, None for a one-shot command or another image."""
        invocations = apprefer_invocations(self.argv(image)) if self.is_apprefer else None
        return service_run_by(invocations[0]) if invocations and len(invocations) == 1 else None

    def healthcheck_test(self) -> list[str] | None:
        check = self.spec.get("healthcheck") or {}
        if check.get("disable"):
            return None
        test = check.get("test")
        if test is None:
            return None
        words = _words(test)
        return None if words == ["NONE"] else words

    def depends_on(self) -> dict[str, str]:
        """Each dependency and its condition."""
        depends = self.spec.get("depends_on") or {}
        if isinstance(depends, list):
            return dict.fromkeys(depends, "service_started")
        return {name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()}


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return ["/bin/sh", "-c", value]
    return [str(word) for word in value]


def compose_services(compose: Mapping[str, Any]) -> list[ComposeService]:
    return [ComposeService(name, dict(spec)) for name, spec in compose["services"].items()]


def healthcheck_argv(test: list[str]) -> list[str]:
    """A healthcheck's `test` as an argv: ["CMD", ...] as it is, ["CMD-SHELL", "..."] through sh."""
    if test[0] == "CMD":
        return test[1:]
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return test


def problems(compose: Mapping[str, Any], image: Image) -> list[str]:
    """Everything that would make the stack not start, not report its health, or not be what the code runs."""
    found: list[str] = []
    every = {service.name: service for service in compose_services(compose)}
    apprefer = [service for service in every.values() if service.is_apprefer]
    running: list[Service] = []
    one_shots: list[ComposeService] = []
    for service in apprefer:
        argv = service.argv(image)
        found += command_problems(service.name, argv)
        env = service.environment()
        found += variable_problems(service.name, env)
        catalog_service = service.runs(image)
        if catalog_service is None:
            invocations = apprefer_invocations(argv)
            if invocations and not any(p.startswith(f"{service.name}:") for p in found):
                one_shots.append(service)
                found += one_shot_problems(service.name, invocations)
                if service.spec.get("restart", "no") not in ("no", "on-failure"):
                    found.append(f"{service.name}: a one-shot command restarted {service.spec['restart']!r}")
            continue
        running.append(catalog_service)
        found += _running_service_problems(service, catalog_service, {**image.setting_env(), **env})
    found += coverage_problems("compose", running)
    if len(one_shots) != 1:
        found.append(f"compose: {len(one_shots)} one-shot init services, not one")
    else:
        found += _order_problems(every, apprefer, one_shots[0])
    found += _reference_problems(every, apprefer)
    found += _health_target_problems(every, image)
    return found


def _running_service_problems(service: ComposeService, catalog_service: Service,
                              env: Mapping[str, str]) -> list[str]:
    found = []
    if service.spec.get("restart") not in LONG_RUNNING_RESTARTS:
        found.append(f"{service.name}: restart {service.spec.get('restart')!r}, not one of {LONG_RUNNING_RESTARTS}")
    test = service.healthcheck_test()
    url = first(urls_in(healthcheck_argv(test))) if test else None
    if url is None:
        found.append(f"{service.name}: no healthcheck asking its /readyz")
    else:
        found += health_url_problems(f"{service.name} healthcheck", catalog_service, url, env, "readiness")
    found += listen_problems(service.name, catalog_service, env)
    port = served_port(catalog_service, env)
    for published in service.spec.get("ports") or []:
        host, _, container = str(published).rpartition(":")
        if int(container) != port:
            found.append(f"{service.name}: publishes container port {container}, but it listens on {port}")
        if catalog_service == ADMIN and not host.startswith("127.0.0.1:"):
            found.append(f"{service.name}: published as {published!r}: the admin API must stay on 127.0.0.1")
    if catalog_service not in (GATEWAY, ADMIN) and service.spec.get("ports"):
        found.append(f"{service.name}: a consumer publishes ports")
    return found


def _health_target_problems(every: Mapping[str, ComposeService], image: Image) -> list[str]:
    """The dashboard's Health page: the admin service's APPREFER_HEALTH_TARGETS names every service at the compose
    service that runs it (its name resolves on the compose network) and the port it serves /readyz on there; the
    admin service itself may be asked on its own loopback."""
    admins = [service for service in every.values() if service.runs(image) == ADMIN]
    if len(admins) != 1:
        return []  # coverage_problems says so
    (admin,) = admins

    def reach(service: Service, host: str, port: int) -> list[str]:
        if is_loopback(host):
            if service != ADMIN:
                return [f"{host} is the admin container's own loopback, where {service.name} does not run"]
            target = admin
        elif (found := every.get(host)) is not None:
            target = found
        else:
            return [f"{host} is no service of the compose file"]
        runs = target.runs(image)
        if runs != service:
            return [f"{host} runs {runs.name if runs else 'no apprefer service'}, not {service.name}"]
        served = served_port(service, {**image.setting_env(), **target.environment()})
        if port != served:
            return [f"port {port}, but {service.name} serves /readyz and /metrics on {served} in {target.name}"]
        return []

    env = {**image.setting_env(), **admin.environment()}
    return health_targets_problems(admin.name, env.get(HEALTH_TARGETS, ""), reach)


def _order_problems(every: Mapping[str, ComposeService], apprefer: list[ComposeService],
                    init: ComposeService) -> list[str]:
    """init after a healthy broker and database; every other apprefer service after init succeeded."""
    found = []
    infrastructure = [name for name, service in every.items() if not service.is_apprefer]
    for name in infrastructure:
        if not re.search(r":\d+\.\d+", str(every[name].spec.get("image", ""))):
            found.append(f"{name}: image {every[name].spec.get('image')!r} is not pinned to a version")
        if init.depends_on().get(name) != "service_healthy":
            found.append(f"{init.name}: does not wait for {name} to be healthy")
        if every[name].healthcheck_test() is None:
            found.append(f"{name}: no healthcheck, so nothing can wait for it")
        if every[name].spec.get("restart") not in LONG_RUNNING_RESTARTS:
            found.append(f"{name}: restart {every[name].spec.get('restart')!r}")
    for service in apprefer:
        if service is not init and service.depends_on().get(init.name) != "service_completed_successfully":
            found.append(f"{service.name}: does not wait for {init.name} to complete successfully")
    return found


def _reference_problems(every: Mapping[str, ComposeService], apprefer: list[ComposeService]) -> list[str]:
    """The broker and database the apprefer services are given are the compose file's own."""
    found = []
    for service in apprefer:
        env = service.environment()
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")
        kafka = every.get(bootstrap.split(":")[0]) if bootstrap else None
        if kafka is None or f"//{bootstrap}" not in kafka.environment().get("KAFKA_ADVERTISED_LISTENERS", ""):
            found.append(f"{service.name}: KAFKA_BOOTSTRAP_SERVERS {bootstrap!r} is no listener of a compose broker")
        database = env.get("DATABASE_URL")
        if not database:
            found.append(f"{service.name}: no DATABASE_URL (it would use SQLite inside its container)")
            continue
        url = make_url(database)
        postgres = every.get(url.host or "")
        pg_env = postgres.environment() if postgres else {}
        if (postgres is None or url.port not in (None, 5432) or url.username != pg_env.get("POSTGRES_USER")
                or url.password != pg_env.get("POSTGRES_PASSWORD") or url.database != pg_env.get("POSTGRES_DB")):
            found.append(f"{service.name}: DATABASE_URL is not the compose PostgreSQL's user, password and database")
    return found
