"""What deploy/ must agree with, derived from the code rather than copied: the `apprefer` CLI parser, the catalog
of services (services/catalog.py), the settings (shared/settings.py) and the network registry.

Each check returns a list of problems (empty: none), so that the tests can show it catching a broken copy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import re
import shlex
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockerfile_parse import DockerfileParser
from pydantic import SecretStr

from services.catalog import ADMIN, GATEWAY, Service, by_command, services
from services.cli import _parser
from shared.networks.registry import registry
from shared.settings import Settings, parse_health_targets

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
HEALTH_PATHS = {"readiness": "/readyz", "liveness": "/healthz"}
HEALTH_TARGETS = "APPREFER_HEALTH_TARGETS"


# -- the command line --------------------------------------------------------------------------------------------


def parse_apprefer(args: list[str]) -> argparse.Namespace | str:
    """`apprefer <args>` as the real parser reads it, or its complaint."""
    complaint = io.StringIO()
    with contextlib.redirect_stderr(complaint), contextlib.redirect_stdout(io.StringIO()):
        try:
            return _parser().parse_args(args)
        except SystemExit as exit_:
            return complaint.getvalue().strip() or f"exits {exit_.code}"


def apprefer_invocations(argv: list[str]) -> list[list[str]] | None:
    """The arguments of each `apprefer` a container's argv runs: its own, or each command of a `sh -c` script
    joined by `&&`. None: the argv runs something else."""
    if argv and Path(argv[0]).name == "apprefer":
        return [argv[1:]]
    if len(argv) == 3 and Path(argv[0]).name == "sh" and argv[1] == "-c":
        commands = [shlex.split(part) for part in argv[2].split("&&")]
        if all(command and command[0] == "apprefer" for command in commands):
            return [command[1:] for command in commands]
    return None


def service_run_by(args: list[str]) -> Service | None:
    """The catalog's service that `apprefer <args>` runs (`run gateway`, `run forwarder --network meta`), or None
    for another command (`db upgrade`) or one the parser refuses."""
    parsed = parse_apprefer(args)
    if isinstance(parsed, str) or parsed.command != "run":
        return None
    command = ("forwarder", "--network", parsed.network) if parsed.service == "forwarder" else (parsed.service,)
    try:
        return by_command(command)
    except StopIteration:
        return None


def command_problems(where: str, argv: list[str]) -> list[str]:
    invocations = apprefer_invocations(argv)
    if invocations is None:
        return [f"{where}: {shlex.join(argv)!r} is not an apprefer command"]
    problems = []
    for args in invocations:
        parsed = parse_apprefer(args)
        if isinstance(parsed, str):
            problems.append(f"{where}: `apprefer {shlex.join(args)}`: {parsed}")
        elif parsed.command == "run" and service_run_by(args) is None:
            problems.append(f"{where}: `apprefer {shlex.join(args)}` is no service of services/catalog.py")
    return problems


def one_shot_problems(where: str, invocations: list[list[str]]) -> list[str]:
    """The init step: the schema first (services may need it as they start), then the topics."""
    if invocations != [["db", "upgrade"], ["topics", "create"]]:
        return [f"{where}: runs {invocations}, not `apprefer db upgrade` then `apprefer topics create`"]
    return []


def coverage_problems(where: str, deployed: Iterable[Service]) -> list[str]:
    """Every service of the catalog (a forwarder per registered network included) exactly once."""
    deployed = list(deployed)
    names = [service.name for service in deployed]
    problems = [f"{where}: {name} runs {names.count(name)} times" for name in sorted(set(names))
                if names.count(name) > 1]
    problems += [f"{where}: {service.name} (`apprefer run {' '.join(service.command)}`) is missing"
                 for service in services() if service not in deployed]
    return problems


# -- settings ----------------------------------------------------------------------------------------------------


def known_variables() -> set[str]:
    """Every variable apprefer reads: the settings' names, and each registered network's URL variables."""
    names = {info.alias for info in Settings.model_fields.values() if info.alias}
    for spec in registry().networks:
        names |= {f"{spec.env_prefix}BASE_URL", f"{spec.env_prefix}TOKEN_URL"}
    return names


def secret_variables() -> set[str]:
    """The settings that are secrets (SecretStr), and the database URL, which holds a password."""
    return {info.alias for info in Settings.model_fields.values()
            if info.alias and SecretStr in typing.get_args(info.annotation)} | {"DATABASE_URL"}


def variable_problems(where: str, names: Iterable[str]) -> list[str]:
    known = known_variables()
    return [f"{where}: {name} is no apprefer setting (shared/settings.py) nor a registered network's URL variable"
            for name in sorted(set(names) - known)]


def health_port_setting(service: Service) -> str:
    """The setting of the port a service serves /healthz and /readyz on: its own HTTP port for the gateway and
    the admin service, APPREFER_METRICS_PORT for a consumer (shared/health.py)."""
    name = {GATEWAY: "gateway_port", ADMIN: "admin_port"}.get(service, "metrics_port")
    return str(Settings.model_fields[name].alias)


def listen_host_setting(service: Service) -> str:
    """The setting of the address a service serves /healthz, /readyz and /metrics on (as health_port_setting)."""
    name = {GATEWAY: "gateway_host", ADMIN: "admin_host"}.get(service, "metrics_host")
    return str(Settings.model_fields[name].alias)


def _setting(variable: str, env: Mapping[str, str]) -> str:
    """A setting's value under `env`: the variable, else the setting's default."""
    default = next(info.default for info in Settings.model_fields.values() if info.alias == variable)
    return str(env.get(variable, default))


def served_port(service: Service, env: Mapping[str, str]) -> int:
    """Where `service` answers /healthz and /readyz under `env`: the variable, else the setting's default."""
    return int(_setting(health_port_setting(service), env))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() in ("localhost", "localhost.")


def listen_problems(where: str, service: Service, env: Mapping[str, str]) -> list[str]:
    """In a container `service` must listen beyond its loopback: the kubelet's probes, Prometheus and the admin
    service's Health page come from outside it."""
    variable = listen_host_setting(service)
    host = _setting(variable, env)
    if is_loopback(host):
        return [f"{where}: {service.name} listens on {host} ({variable}), its container's loopback: probes, "
                "Prometheus and the dashboard's Health page cannot reach it there"]
    return []


# reach(service, host, port): why `host:port` is not where the admin service reaches `service` (empty: it is).
Reach = Callable[[Service, str, int], list[str]]


def health_targets_problems(where: str, value: str, reach: Reach) -> list[str]:
    """The admin service's APPREFER_HEALTH_TARGETS lists every service of the catalog under its name (a forwarder
    per registered network included), each at an http:// address `reach` accepts, and nothing else."""
    try:
        targets = parse_health_targets(value)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    catalog = {service.name: service for service in services()}
    problems = [f"{where}: {HEALTH_TARGETS} names {name}, no service of services/catalog.py"
                for name in targets if name not in catalog]
    for name, service in catalog.items():
        url = targets.get(name)
        if url is None:
            problems.append(f"{where}: {name} is missing from {HEALTH_TARGETS}")
            continue
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.path not in ("", "/"):
            problems.append(f"{where}: {name}={url} is not http://host:port (the services serve plain HTTP)")
            continue
        problems += [f"{where}: {name}={url}: {reason}"
                     for reason in reach(service, str(parts.hostname), parts.port or 80)]
    return problems


def health_url_problems(where: str, service: Service, url: str, env: Mapping[str, str], kind: str) -> list[str]:
    """A health check of `service` by URL from inside its container: loopback, the port it serves health on
    under `env`, and the endpoint of `kind` (readiness: /readyz, liveness: /healthz)."""
    parts = urlsplit(url)
    problems = []
    if parts.hostname not in ("127.0.0.1", "localhost"):
        problems.append(f"{where}: {url} is not the container's own loopback")
    port = served_port(service, env)
    if port == 0:
        problems.append(f"{where}: {health_port_setting(service)} is 0: {service.name} serves no health endpoint")
    elif parts.port != port:
        problems.append(f"{where}: {url} asks port {parts.port}, but {service.name} serves /healthz and /readyz "
                        f"on {port} ({health_port_setting(service)})")
    if parts.path != HEALTH_PATHS[kind]:
        problems.append(f"{where}: {url} is not {service.name}'s {kind} endpoint {HEALTH_PATHS[kind]}")
    return problems


# -- the image ---------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (instruction, value)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


@dataclass
class Image:
    """What deploy/Dockerfile's last stage makes: what compose and Kubernetes inherit from it."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    stages: list[Stage]

    def setting_env(self) -> dict[str, str]:
        """The image's variables that are apprefer settings (not PATH, PYTHON*)."""
        known = known_variables()
        return {name: value for name, value in self.env.items() if name in known}


def read_image(dockerfile: str) -> Image:
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.encode()))
    stages: list[Stage] = []
    resolved = iter(parser.parent_images)  # FROM lines with their ARGs substituted
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            stages.append(Stage(next(resolved), words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        elif instruction != "COMMENT" and stages:
            stages[-1].instructions.append((instruction, value))
    final = stages[-1]
    return Image(entrypoint=exec_form(final.values("ENTRYPOINT")[-1]) if final.values("ENTRYPOINT") else [],
                 cmd=exec_form(final.values("CMD")[-1]) if final.values("CMD") else [],
                 env=dict(parser.envs), workdir=(final.values("WORKDIR") or ["/"])[-1], stages=stages)


def exec_form(value: str) -> list[str]:
    try:
        words = json.loads(value)
    except ValueError:
        return ["/bin/sh", "-c", value]
    return [str(word) for word in words]


def image() -> Image:
    return read_image((DEPLOY / "Dockerfile").read_text())


def host_path(path: str, image_: Image) -> Path | None:
    """The repository file an absolute path under the image's WORKDIR (/app) came from, the Dockerfile copying the
    checkout's tree there; None for a path outside it."""
    root = image_.workdir.rstrip("/") + "/"
    return REPO / path[len(root):] if path.startswith(root) else None


# -- helpers for both deploy formats ------------------------------------------------------------------------------


def urls_in(argv: Iterable[str]) -> list[str]:
    return [word for word in argv if re.match(r"https?://", word)]


def first(items: Iterable[Any]) -> Any:
    return next(iter(items), None)
