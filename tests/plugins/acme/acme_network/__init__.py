"""Acme Ads, a made-up network, as a plugin package would add one: a spec, a payload builder and a response
classifier, and nothing in apprefer's tree changes.

`POST {base}/v1/conversions` with the `X-Acme-Key` header and `{"account": ..., "conversions": [...]}`;
Acme credits its click id `acmeclid` (`AcmeClid=` on landing URLs) and answers `{"accepted": n}`, 401 for
a bad key, 429 or 5xx when it cannot take the request now. `POST {base}/v1/ping` checks a key.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, SecretStr

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
from shared.forwarding.payload import required
from shared.networks.spec import ClickId, NetworkSettings, NetworkSpec


class Settings(NetworkSettings):
    account_id: str = Field(min_length=1, description="The Acme advertiser account")


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: SecretStr = Field(min_length=1)


def pre_check(job: ForwardJob, now_ms: int) -> Outcome | None:
    return None


def build_request(jobs: Sequence[ForwardJob], integration: Integration, base_url: str,
                  access_token: str | None) -> HttpRequest:
    conversions = [{"id": job.event_id, "name": job.network_event_name, "click": job.click_id,
                    "time": job.event_time_ms // 1000, "value": job.revenue_amount, "currency": job.revenue_currency}
                   for job in jobs]
    return _post(integration, base_url, "/v1/conversions",
                 {"account": required(integration.settings, "settings.account_id", "acme"), "conversions": conversions})


def classify(response: HttpResponse, jobs: Sequence[ForwardJob]) -> list[Outcome]:
    return [_outcome(response)] * len(jobs)


def test_request(integration: Integration, base_url: str, access_token: str | None) -> HttpRequest:
    return _post(integration, base_url, "/v1/ping", {})


def test_result(response: HttpResponse) -> ConnectionCheck:
    return ConnectionCheck(response.status == 200, f"Acme answered HTTP {response.status}")


def _post(integration: Integration, base_url: str, path: str, body: dict[str, object]) -> HttpRequest:
    key = required(integration.credentials, "credentials.api_key", "acme")
    return HttpRequest("POST", f"{base_url.rstrip('/')}{path}", headers={"X-Acme-Key": key}, json=body)


def _outcome(response: HttpResponse) -> Outcome:
    if response.status == 200:
        return Delivered(f"accepted {(response.json() or {}).get('accepted')}")
    if response.status == 429 or response.status >= 500:
        return RetryLater(f"Acme answered HTTP {response.status}", response.retry_after_seconds(), str(response.status))
    return Permanent(f"Acme answered HTTP {response.status}", str(response.status))


SPEC = NetworkSpec(
    name="acme", title="Acme Ads", default_base_url="https://api.acme.example", batch_limit=100,
    settings=Settings, credentials=Credentials, pre_check=pre_check, build_request=build_request,
    classify=classify, test_request=test_request, test_result=test_result,
    click_ids=(ClickId("acmeclid", ("AcmeClid",)),), default_event_names={"purchase": "sale"},
)
