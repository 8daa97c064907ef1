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


def run(service: Service, settings: object) -> None:
    importlib.import_module(service.module).run(settings, *service.run_args())
