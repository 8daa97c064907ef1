"""TikTok Events API 2.0 (app events): jobs in, one track request out, one outcome per job back. Pure.

Integration: `settings.tiktok_app_id` (the TikTok App ID from Events Manager: the event source), optional
`settings.store_app_id` (the App Store id or Android package name TikTok expects in `app.app_id`; the
TikTok App ID stands in when it is not set), optional `settings.test_event_code` (Test Connection);
`credentials.access_token` is used when the caller passes no token. The token travels in the
`Access-Token` header only. A missing app id or token raises ValueError naming it (the engine dead-letters the
batch with that reason).

TikTok reports errors as HTTP 200 with a non-zero `code` in the body, and answers per request: every job
of a request shares the outcome. It dedupes on (event, event_id) for 48 h, so a retry is always safe.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

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
from shared.forwarding.payload import is_sha256_hex, order_fields, required, usable_advertising_id
from shared.networks.spec import AccessToken, ClickId, NetworkSpec, UnattributedOptIn

NETWORK = "tiktok"
BATCH_LIMIT = 1_000
API_PATH = "/open_api/v1.3/event/track/"

OK = 0
PARTIAL_SUCCESS = 20001
RATE_LIMITED = 40100
BAD_TOKEN = 40105
PERMANENT_CODES = frozenset({40001, 40002, BAD_TOKEN})

# TikTok's user key → the gateway's hash key. TikTok hashes phones in E.164 with "+", not Meta's form.
HASHED_USER_KEYS = {"email": "em", "phone": "ph_e164", "external_id": "external_id"}
ATT_STATUSES = frozenset({"AUTHORIZED", "DENIED", "NOT_DETERMINED", "RESTRICTED", "NOT_APPLICABLE"})

TEST_EVENT_CODE = "TEST_CONNECTION"
TEST_EVENT_ID = "apprefer-test-connection"



DEFAULT_EVENT_NAMES = {"purchase": "Purchase", "trial_start": "StartTrial", "subscribe": "Subscribe",
                       "install": "InstallApp", "registration": "Registration", "add_to_cart": "AddToCart"}


class Settings(UnattributedOptIn):
    tiktok_app_id: str = Field(min_length=1, max_length=64, description="The TikTok App ID from Events Manager")
    store_app_id: str | None = Field(None, max_length=255,
                                     description="The App Store id or Android package name (default: tiktok_app_id)")
    test_event_code: str | None = Field(None, max_length=64, description="Test Connection's test event code")


def pre_check(job: ForwardJob, now_ms: int) -> Outcome | None:
    return None


def build_request(jobs: Sequence[ForwardJob], integration: Integration, base_url: str,
                  access_token: str | None) -> HttpRequest:
    return _track(integration, base_url, access_token, {"data": [_event(job, integration) for job in jobs]})


def classify(response: HttpResponse, jobs: Sequence[ForwardJob]) -> list[Outcome]:
    return [_request_outcome(response)] * len(jobs)


def test_request(integration: Integration, base_url: str, access_token: str | None) -> HttpRequest:
    # The test event code shows the event in Events Manager's Test Events only. The clock is read here (and
    # only here): a fixed, old event_time could be refused, which would fail the check for the wrong reason.
    event = {"event": "LaunchAPP", "event_time": int(time.time()), "event_id": TEST_EVENT_ID, "user": {},
             "app": _app(integration, None)}
    test_event_code = str(integration.settings.get("test_event_code") or TEST_EVENT_CODE)
    return _track(integration, base_url, access_token, {"test_event_code": test_event_code, "data": [event]})


def test_result(response: HttpResponse) -> ConnectionCheck:
    body = response.json()
    code = _code(body)
    if response.status == 200 and code == OK:
        return ConnectionCheck(True, "TikTok accepted a test event (visible under Test Events only)")
    if code is None:
        return ConnectionCheck(False, f"TikTok answered HTTP {response.status} without its JSON answer")
    return ConnectionCheck(False, _text(code, body))


# --- the request --------------------------------------------------------------------------------


def _track(integration: Integration, base_url: str, access_token: str | None, fields: Mapping[str, Any]) -> HttpRequest:
    token = access_token or required(integration.credentials, "credentials.access_token", NETWORK)
    body = {"event_source": "app", "event_source_id": required(integration.settings, "settings.tiktok_app_id", NETWORK),
            **fields}
    return HttpRequest("POST", f"{base_url.rstrip('/')}{API_PATH}", headers={"Access-Token": token}, json=body)


def _event(job: ForwardJob, integration: Integration) -> dict[str, Any]:
    properties = order_fields(job)
    return {
        "event": job.network_event_name,
        "event_time": job.event_time_ms // 1000,
        "event_id": job.event_id,
        "user": _user(job),
        "properties": properties,
        "app": _app(integration, job.device.app_version),
    }


def _user(job: ForwardJob) -> dict[str, Any]:
    user: dict[str, Any] = {}
    if job.click_id_type == "ttclid" and job.click_id:
        user["ttclid"] = job.click_id
    for tiktok_key, hash_key in HASHED_USER_KEYS.items():
        value = job.user_hashes.get(hash_key)
        if is_sha256_hex(value):
            user[tiktok_key] = [value]
    device = job.device
    for key, given in (("idfa", device.idfa), ("gaid", device.gaid)):
        advertising_id = usable_advertising_id(given)
        if advertising_id:
            user[key] = hashlib.sha256(advertising_id.strip().lower().encode()).hexdigest()
    att_status = _att_status(job)
    if att_status:
        user["att_status"] = att_status
    for key, text in (("ip", device.ip), ("user_agent", device.user_agent), ("locale", device.locale)):
        if text:
            user[key] = text
    return user


def _att_status(job: ForwardJob) -> str | None:
    status = (job.device.att_status or "").strip().upper().replace(" ", "_")
    if status in ATT_STATUSES:
        return status
    if not status and (job.device.os or "").lower() == "android":
        return "NOT_APPLICABLE"  # ATT exists on iOS only
    return None


def _app(integration: Integration, app_version: str | None) -> dict[str, str]:
    settings = integration.settings
    app = {"app_id": str(settings.get("store_app_id") or settings.get("tiktok_app_id") or "")}
    if app_version:
        app["app_version"] = app_version
    return app


# --- the answer -----------------------------------------------------------------------------------


def _request_outcome(response: HttpResponse) -> Outcome:
    body = response.json()
    code = _code(body)
    retry_after = response.retry_after_seconds()
    if response.status >= 500 or response.status == 429:
        return RetryLater(f"TikTok answered HTTP {response.status}", retry_after, str(code or response.status))
    if code is None:
        if response.status == 200:
            # Ambiguous: the events may have been recorded. TikTok dedupes on event_id, so retrying is safe.
            return RetryLater("TikTok answered HTTP 200 without a JSON code (malformed body)", retry_after, "200")
        return Permanent(f"TikTok answered HTTP {response.status} without its JSON answer", str(response.status))
    text = _text(code, body)
    if code == OK:
        return Delivered(f"request_id {body.get('request_id')}")
    if code == PARTIAL_SUCCESS:
        # Which events failed is not given in a form documented by TikTok: the answer is kept as detail.
        return Delivered(f"partial success: {text}")
    if code == RATE_LIMITED or 50000 <= code <= 59999:
        return RetryLater(text, retry_after, str(code))
    if code == BAD_TOKEN:
        return Permanent(f"access token invalid or revoked (alert: issue a new token): {text}", str(code))
    return Permanent(text, str(code))


def _code(body: Any) -> int | None:
    code = body.get("code") if isinstance(body, dict) else None
    try:
        return int(code) if code is not None and not isinstance(code, bool) else None
    except (TypeError, ValueError):
        return None


def _text(code: int, body: Any) -> str:
    answer = body if isinstance(body, dict) else {}
    return f"TikTok code {code}: {answer.get('message') or 'no message'} (request_id {answer.get('request_id')})"


SPEC = NetworkSpec(
    name=NETWORK, title="TikTok Events API", default_base_url="https://business-api.tiktok.com",
    batch_limit=BATCH_LIMIT, settings=Settings, credentials=AccessToken,
    pre_check=pre_check, build_request=build_request, classify=classify,
    test_request=test_request, test_result=test_result,
    click_ids=(ClickId("ttclid"),), default_event_names=DEFAULT_EVENT_NAMES,
)
