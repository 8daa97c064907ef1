"""Which networks receive an attributed event, under which name. Pure.

Each network declares its rules (shared/networks/spec.py): the click ids it credits, its default event
names (or the setting that holds them: Google Ads' `conversion_actions`), and whether an integration
may opt in to unattributed conversions. An integration's `event_map` overrides the names
(`{"level_up": "AchieveLevel"}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.networks.spec import NetworkSpec


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one event and one integration: a job (network_event_name) or a skip."""

    network: str
    network_event_name: str | None
    skip_reason: str | None = None


INSTALL = "install"
REINSTALL_SKIP = ("reinstall: inside the app's re-attribution window the device keeps its first install "
                  "(set forward_reinstalls: true on the integration to send it)")


def route(spec: NetworkSpec, event_name: str, attribution: Mapping[str, Any], settings: Mapping[str, Any],
          event_map: Mapping[str, Any]) -> Route:
    """Only conversions the network can use: its own click id, or (networks that match on their own, when
    the integration opts in with `forward_unattributed`) any. A reinstall inside the re-attribution window
    is not a new install for the network (the device's later events still forward under its original
    attribution), unless the integration opts in with `forward_reinstalls`."""
    network = spec.name
    name = spec.event_name(event_name, settings, event_map)
    if name is None:
        return Route(network, None, f"event {event_name!r} is not mapped for {network}")
    if event_name == INSTALL and attribution.get("reinstall") and settings.get("forward_reinstalls") is not True:
        return Route(network, None, REINSTALL_SKIP)
    credited = {click_id.type for click_id in spec.click_ids}
    if attribution.get("click_id_type") in credited and attribution.get("click_id"):
        return Route(network, name)
    if spec.forwards_unattributed and settings.get("forward_unattributed") is True:
        return Route(network, name)
    return Route(network, None, f"not attributed to {network}")
