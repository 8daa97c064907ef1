"""The network modules: one per network, each a pure payload builder and response classifier."""

from __future__ import annotations

import importlib
from typing import cast

from shared.forwarding.network import NetworkModule

NETWORK_MODULES = ("meta", "google_ads", "tiktok", "skan_postback")


def network_module(network: str) -> NetworkModule:
    if network not in NETWORK_MODULES:
        raise ValueError(f"no forwarder for {network!r}; known: {', '.join(NETWORK_MODULES)}")
    return cast(NetworkModule, importlib.import_module(f"services.forwarders.{network}"))
