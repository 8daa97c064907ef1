"""Real HTTP servers standing in for the ad networks in tests (see tests/fakes/base.py).

The fake of network <name> is `FAKE` in tests/fakes/<name>.py; `fake_class` finds it, so a new network's
fake is one new file.
"""

from __future__ import annotations

import importlib

from tests.fakes.ad_network import FakeAdNetwork
from tests.fakes.base import FakeServer, RecordedRequest
from tests.fakes.google_ads import FakeGoogleAds
from tests.fakes.meta import FakeMeta
from tests.fakes.tiktok import FakeTikTok

__all__ = ["FakeAdNetwork", "FakeGoogleAds", "FakeMeta", "FakeServer", "FakeTikTok", "RecordedRequest", "fake_class"]


def fake_class(network: str) -> type[FakeServer] | None:
    """The fake of a registered network, or None when tests/fakes has none (a plugin's own network)."""
    try:
        module = importlib.import_module(f"tests.fakes.{network}")
    except ModuleNotFoundError as exc:
        if exc.name == f"tests.fakes.{network}":
            return None
        raise
    fake = getattr(module, "FAKE", None)
    return fake if isinstance(fake, type) and issubclass(fake, FakeServer) else None
