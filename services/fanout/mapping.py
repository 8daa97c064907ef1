"""Which networks receive an attributed event, under which name. Pure.

Defaults follow each network's standard app events; an integration's `event_map` overrides them
(`{"level_up": "AchieveLevel"}`), and for Google Ads the name is the conversion action resource
configured in `settings.conversion_actions` for the apprefer event name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORWARDED_NETWORKS = ("meta", "google_ads", "tiktok")

DEFAULT_NAMES: dict[str, dict[str, str]] = {
    "meta": {"purchase": "Purchase", "trial_start": "StartTrial", "subscribe": "Subscribe",
             "registration": "CompleteRegistration", "add_to_cart": "AddToCart"},
    "tiktok": {"purchase": "Purchase", "trial_start": "StartTrial", "subscribe": "Subscribe",
               "install": "InstallApp", "registration": "Registration", "add_to_cart": "AddToCart"},
}

# The click id types a network can use to credit a conversion.
NETWORK_CLICK_IDS: dict[str, tuple[str, ...]] = {
    "meta": ("fbclid",),
    "google_ads": ("gclid", "gbraid", "wbraid"),
    "tiktok": ("ttclid",),
}


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one event and one integration: a job (network_event_name) or a skip."""

    network: str
    network_event_name: str | None
    skip_reason: str | None = None


def network_event_name(network: str, event_name: str, settings: Mapping[str, Any],
                       event_map: Mapping[str, Any]) -> str | None:
    mapped = event_map.get(event_name)
    if isinstance(mapped, str) and mapped:
        return mapped
    if network == "google_ads":
        action = (settings.get("conversion_actions") or {}).get(event_name)
        return action if isinstance(action, str) and action else None
    return DEFAULT_NAMES.get(network, {}).get(event_name)


INSTALL = "install"
REINSTALL_SKIP = ("reinstall: inside the app's re-attribution window the device keeps its first install "
                  "(set forward_reinstalls: true on the integration to send it)")


def route(network: str, event_name: str, attribution: Mapping[str, Any], settings: Mapping[str, Any],
          event_map: Mapping[str, Any]) -> Route:
    """Only conversions the network can use: its own click id, or (Meta and TikTok, when the
    integration opts in with `forward_unattributed`) its advertising-id matching. A reinstall
    inside the re-attribution window is not a new install for the network (the device's later
    events still forward under its original attribution), unless the integration opts in with
    `forward_reinstalls`."""
    name = network_event_name(network, event_name, settings, event_map)
    if name is None:
        return Route(network, None, f"event {event_name!r} is not mapped for {network}")
    if event_name == INSTALL and attribution.get("reinstall") and settings.get("forward_reinstalls") is not True:
        return Route(network, None, REINSTALL_SKIP)
    if attribution.get("click_id_type") in NETWORK_CLICK_IDS.get(network, ()) and attribution.get("click_id"):
        return Route(network, name)
    if network != "google_ads" and settings.get("forward_unattributed") is True:
        return Route(network, name)
    return Route(network, None, f"not attributed to {network}")
