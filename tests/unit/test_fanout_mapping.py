"""Which network gets an event, under which name (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from services.fanout import mapping
from shared.networks.registry import registry


def network_event_name(network: str, event_name: str, settings: dict[str, Any], event_map: dict[str, Any]
                       ) -> str | None:
    return registry().get(network).event_name(event_name, settings, event_map)


def route(network: str, *args: Any) -> mapping.Route:
    return mapping.route(registry().get(network), *args)


GOOGLE_SETTINGS = {"conversion_actions": {"purchase": "customers/1/conversionActions/2"}}


@pytest.mark.parametrize(
    ("network", "event_name", "settings", "expected"),
    [
        ("meta", "purchase", {}, "Purchase"),
        ("meta", "trial_start", {}, "StartTrial"),
        ("meta", "subscribe", {}, "Subscribe"),
        ("meta", "install", {}, None),  # Meta gets installs only when mapped
        ("tiktok", "install", {}, "InstallApp"),
        ("tiktok", "purchase", {}, "Purchase"),
        ("google_ads", "purchase", GOOGLE_SETTINGS, "customers/1/conversionActions/2"),
        ("google_ads", "trial_start", GOOGLE_SETTINGS, None),
        ("meta", "level_up", {}, None),
    ],
)
def test_default_names(network: str, event_name: str, settings: dict[str, object], expected: str | None) -> None:
    assert network_event_name(network, event_name, settings, {}) == expected


def test_event_map_overrides_defaults_and_maps_custom_events() -> None:
    event_map = {"purchase": "CustomPurchase", "level_up": "AchieveLevel", "install": "ActivateApp"}
    assert network_event_name("meta", "purchase", {}, event_map) == "CustomPurchase"
    assert network_event_name("tiktok", "level_up", {}, event_map) == "AchieveLevel"
    assert network_event_name("meta", "install", {}, event_map) == "ActivateApp"


@pytest.mark.parametrize(
    ("network", "click_id_type", "forwarded"),
    [("meta", "fbclid", True), ("meta", "gclid", False), ("google_ads", "gclid", True),
     ("google_ads", "gbraid", True), ("google_ads", "wbraid", True), ("google_ads", "ttclid", False),
     ("tiktok", "ttclid", True), ("tiktok", None, False)],
)
def test_a_network_only_gets_conversions_it_can_use(network: str, click_id_type: str | None, forwarded: bool) -> None:
    attribution = {"click_id_type": click_id_type, "click_id": "X1" if click_id_type else None}
    decision = route(network, "purchase", attribution, GOOGLE_SETTINGS, {})
    assert (decision.network_event_name is not None) is forwarded
    if not forwarded:
        assert decision.skip_reason == f"not attributed to {network}"


def test_forward_unattributed_opt_in_is_for_meta_and_tiktok_only() -> None:
    organic = {"click_id_type": None, "click_id": None}
    settings = {**GOOGLE_SETTINGS, "forward_unattributed": True}
    assert route("meta", "purchase", organic, settings, {}).network_event_name == "Purchase"
    assert route("tiktok", "purchase", organic, settings, {}).network_event_name == "Purchase"
    assert route("google_ads", "purchase", organic, settings, {}).network_event_name is None


def test_unmapped_event_is_skipped_with_the_reason() -> None:
    decision = route("meta", "level_up", {"click_id_type": "fbclid", "click_id": "F"}, {}, {})
    assert decision.network_event_name is None and "not mapped" in (decision.skip_reason or "")


def test_a_reinstall_is_not_sent_as_an_install_unless_the_integration_opts_in() -> None:
    from services.fanout.mapping import REINSTALL_SKIP

    reinstall = {"click_id_type": "ttclid", "click_id": "E.C.P.x", "reinstall": True}
    assert route("tiktok", "install", reinstall, {}, {}).skip_reason == REINSTALL_SKIP
    assert route("tiktok", "install", reinstall, {"forward_reinstalls": True}, {}).network_event_name == "InstallApp"
    assert route("tiktok", "install", {**reinstall, "reinstall": False}, {}, {}).network_event_name == "InstallApp"
    # The device's later events still forward under its original attribution.
    assert route("tiktok", "purchase", reinstall, {}, {}).network_event_name == "Purchase"
    assert route("meta", "install", {**reinstall, "click_id_type": "fbclid"}, {}, {"install": "MobileAppInstall"}
                 ).skip_reason == REINSTALL_SKIP
