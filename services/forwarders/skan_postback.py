"""Decoded SKAN postbacks to ad networks: a GET of the URL the fanout rendered. Pure.

One postback per request (each has its own URL). The network de-duplicates on `{postback_id}`,
so a retry after an ambiguous failure is safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from shared.forwarding.model import (
    ConnectionCheck,
    Delivered,
    ForwardJob,
    HttpRequest,
    HttpResponse,
    Integration,
    Outcome,
    Permanent,
    RetryLater,
)
from shared.networks.spec import Closed, Feed, NetworkSpec, NoCredentials

# {placeholders} the fanout fills in (services/domain/skan/macros.py); an URL must be http(s).
URL_TEMPLATE = r"^https?://\S+$"


class AdNetworkPostbacks(Closed):
    """One ad network that receives decoded postbacks: the ones whose ad-network-id is `ad_network_id`."""
    ad_network_id: str = Field(min_length=1, max_length=128,
                               description="The SKAdNetwork id, e.g. cstr6suwn9.skadnetwork")
    install_url: str | None = Field(None, pattern=URL_TEMPLATE, max_length=2000,
                                    description="Install postback URL template ({postback_id}, {conversion_value}…)")
    event_url: str | None = Field(None, pattern=URL_TEMPLATE, max_length=2000,
                                  description="Event postback URL template, one GET per event occurrence")
    event_map: dict[str, str] = Field(default_factory=dict, description="apprefer event name -> the network's event id")


class Settings(Closed):
    ad_networks: list[AdNetworkPostbacks] = Field(default_factory=list)

NETWORK = "skan_postback"
BATCH_LIMIT = 1
TRANSIENT_STATUSES = {408, 425, 429}


def pre_check(job: ForwardJob, now_ms: int) -> Outcome | None:
    url = job.properties.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return Permanent(f"no usable postback URL for {job.properties.get('ad_network_id')}: {url!r}")
    return None


def build_request(jobs: Sequence[ForwardJob], integration: Integration, base_url: str,
                  access_token: str | None) -> HttpRequest:
    [job] = jobs
    return HttpRequest("GET", str(job.properties["url"]))


def classify(response: HttpResponse, jobs: Sequence[ForwardJob]) -> list[Outcome]:
    if 200 <= response.status < 300:
        return [Delivered()] * len(jobs)
    detail = response.body[:200].decode("utf-8", "replace")
    if response.status >= 500 or response.status in TRANSIENT_STATUSES:
        return [RetryLater(f"HTTP {response.status}: {detail}", response.retry_after_seconds(),
                           str(response.status))] * len(jobs)
    return [Permanent(f"HTTP {response.status}: {detail}", str(response.status))] * len(jobs)


def test_request(integration: Integration, base_url: str, access_token: str | None) -> HttpRequest:
    raise ValueError("decoded SKAN postbacks have no dry run: the ad network's URL records what it receives")


def test_result(response: HttpResponse) -> ConnectionCheck:
    return ConnectionCheck(200 <= response.status < 300, f"HTTP {response.status}")


SPEC = NetworkSpec(
    name=NETWORK, title="Decoded SKAN postbacks to ad networks", default_base_url=None,
    batch_limit=BATCH_LIMIT, settings=Settings, credentials=NoCredentials,
    pre_check=pre_check, build_request=build_request, classify=classify,
    test_request=test_request, test_result=test_result, feed=Feed.SKAN,
)
