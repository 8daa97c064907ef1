"""The fake for the `skan_postback` network: an ad network receiving decoded SKAN postbacks (ad_network.py)."""

from tests.fakes.ad_network import FakeAdNetwork

FAKE = FakeAdNetwork
