"""Every process apprefer runs: the one table `apprefer run`, `apprefer dev`, its drain and the end-to-end
test harness read. A forwarder per registered network (shared/networks/registry.py)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from shared.kafka.topics import (
    AUDIT_RECORDS,
    CLICKS_RAW,
    EVENTS_ATTRIBUTED,
    EVENTS_RAW,
    SKAN_DECODED,
    SKAN_RAW,
    forward_topic,
)
from shared.networks.registry import registry
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class Service:
    name: str  # in logs, metrics and `apprefer dev`'s output
    command: tuple[str, ...]  # the arguments of `apprefer run`
    module: str  # its `run(settings, *args)`
    topics: tuple[str, ...] = ()  # the main topics it consumes (none: the gateway)

    @property
    def group_id(self) -> str | None:
        return group_id(self.name) if self.topics else None

    def run_args(self) -> tuple[str, ...]:
        """What `run` takes after the settings: the network, for a forwarder."""
        return self.command[2:] if self.command[0] == "forwarder" else ()


def group_id(service: str) -> str:
    return f"apprefer-{service}"


GATEWAY = Service("gateway", ("gateway",), "services.gateway.main")
ADMIN = Service("admin", ("admin",), "services.admin.main")
CONSUMERS = (
    Service("attribution", ("attribution",), "services.attribution.main", (CLICKS_RAW, EVENTS_RAW)),
    Service("skan", ("skan",), "services.skan.main", (SKAN_RAW,)),
    Service("fanout", ("fanout",), "services.fanout.main", (EVENTS_ATTRIBUTED, SKAN_DECODED)),
    Service("audit", ("audit",), "services.audit.main", (AUDIT_RECORDS,)),
)
# `apprefer run`'s choices.
RUNNABLE = ("gateway", "admin", *(service.name for service in CONSUMERS), "forwarder")


def consumer_topics(name: str) -> tuple[str, ...]:
    return next(service.topics for service in CONSUMERS if service.name == name)


def forwarder(network: str) -> Service:
    return Service(f"forwarder-{network}", ("forwarder", "--network", network), "services.forwarders.main",
                   (forward_topic(network),))


def services() -> tuple[Service, ...]:
    """The gateway and the admin service first, then every consumer, then a forwarder per registered network."""
    return (GATEWAY, ADMIN, *CONSUMERS, *(forwarder(name) for name in registry().names))


def by_command(command: tuple[str, ...]) -> Service:
    return next(service for service in services() if service.command == command)


# `apprefer dev` runs every service on one host: the gateway on APPREFER_GATEWAY_PORT, the admin service on
# APPREFER_ADMIN_PORT, and each consumer's /healthz, /readyz and /metrics on the gateway's port plus the consumer's
# place in services(): after the gateway and the admin service (whose default port, 8081, is the gateway's plus one).
CONSUMER_PORTS_FROM = 2


def dev_health_ports(gateway_port: int) -> dict[Service, int]:
    """The port of each consumer's health server under `apprefer dev` (its APPREFER_METRICS_PORT)."""
    return {service: gateway_port + index
            for index, service in enumerate(services()) if index >= CONSUMER_PORTS_FROM}


def default_health_targets(settings: Settings) -> dict[str, str]:
    """Each service's base URL (/readyz, /metrics) by name where `apprefer dev` puts it on this host: what the
    dashboard's Health page asks when APPREFER_HEALTH_TARGETS is unset."""
    targets = {GATEWAY.name: _base_url(settings.gateway_host, settings.gateway_port),
               ADMIN.name: _base_url(settings.admin_host, settings.admin_port)}
    targets.update({service.name: _base_url("127.0.0.1", port)  # shared/health.py listens there
                    for service, port in dev_health_ports(settings.gateway_port).items()})
    return targets


def _base_url(host: str, port: int) -> str:
    """A listening address as a URL to reach it from this host: a wildcard address is reached on loopback."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(service: Service, settings: object) -> None:
    importlib.import_module(service.module).run(settings, *service.run_args())
