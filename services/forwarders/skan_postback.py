"""Decoded SKAN postbacks to ad networks: a GET of the URL the fanout rendered. Pure.

One postback per request (each has its own URL). The network de-duplicates on `{postback_id}`,
so a retry after an ambiguous failure is safe.
"""

from __future__ import annotations

from collections.abc import Sequence

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

NETWORK = "skan_postback"
BATCH_LIMIT = 1
NEEDS_BASE_URL = False  # each ad network's URL comes from the app's integration settings
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
