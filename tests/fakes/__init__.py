"""Real HTTP servers standing in for the ad networks in tests (see tests/fakes/base.py)."""

from tests.fakes.ad_network import FakeAdNetwork
from tests.fakes.base import FakeServer, RecordedRequest
from tests.fakes.google_ads import FakeGoogleAds
from tests.fakes.meta import FakeMeta
from tests.fakes.tiktok import FakeTikTok

__all__ = ["FakeAdNetwork", "FakeGoogleAds", "FakeMeta", "FakeServer", "FakeTikTok", "RecordedRequest"]
