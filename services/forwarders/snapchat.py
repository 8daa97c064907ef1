"""Snapchat Conversions API v3 (app events): jobs in, one events request out, one outcome per job back. Pure.

Integration: `settings.snap_app_id` (the Snap App ID the events go to), optional `settings.bundle_id`
(extinfo's package name); `credentials.access_token` (a Conversions API token) is used when the caller passes
no token. The token travels in the URL query only, never in the JSON body or an outcome's text. A missing app
id or token raises ValueError naming it (the engine dead-letters the batch with that reason).

Snap answers per request with one `status`, so every job of a request shares its outcome; it dedupes on
event_id, so sending a batch again is safe. Events older than Snap's 37 days are filtered out before the call
by `pre_check`. Test Connection posts one event to `/events/validate`, which checks it and records nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import Field

from services.forwarders.meta import extinfo
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
from shared.forwarding.payload import ZERO_AD_ID, is_sha256_hex, order_fields, required, too_old, usable_advertising_id
from shared.networks.spec import AccessToken, ClickId, NetworkSpec, UnattributedOptIn

NETWORK = "snapchat"
BATCH_LIMIT = 2_000
API_VERSION = "v3"
CLICK_ID_TYPE = "sccid"

# Snap reports events up to 37 days old.
MAX_EVENT_AGE_DAYS = 37

# Snap's user_data keys for SHA-256 hashes, which are the gateway's keys too: `ph` is digits with the country
# code and no "+", Meta's form (ph_e164 is TikTok's and is never sent here).
HASHED_USER_KEYS = ("em", "ph")
REFUSED_STATUSES = frozenset({"INVALID", "FAILED"})
BAD_TOKEN_STATUSES = frozenset({401, 403})

DEFAULT_EVENT_NAMES = {"purchase": "PURCHASE", "subscribe": "SUBSCRIBE", "trial_start": "START_TRIAL",
                       "registration": "SIGN_UP", "add_to_cart": "ADD_CART", "level_complete": "LEVEL_COMPLETE",
                       "install": "APP_INSTALL"}

TEST_EVENT_NAME = "APP_OPEN"
TEST_EVENT_ID = "apprefer-test-connection"
# Snap matches an event on at least one user key; validate is given documentation-only values (RFC 5737's
# TEST-NET-1) so a missing match key is not what fails the check.
TEST_USER_DATA = {"client_ip_address": "192.0.2.1", "client_user_agent": "apprefer (Test Connection)"}

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Settings(UnattributedOptIn):
    snap_app_id: str = Field(min_length=1, max_length=64, description="The Snap App ID the events go to")
    bundle_id: str | None = Field(None, max_length=255, description="The app's package name, for extinfo")


def pre_check(job: ForwardJob, now_ms: int) -> Outcome | None:
    return too_old(job, now_ms, MAX_EVENT_AGE_DAYS, "Snapchat")


def build_request(jobs: Sequence[ForwardJob], integration: Integration, base_url: str,
                  access_token: str | None) -> HttpRequest:
    bundle_id = str(integration.settings.get("bundle_id") or "")
    events = [_event(job, bundle_id) for job in jobs]
    return HttpRequest("POST", _url(integration, base_url, access_token, "/events"), json={"data": events})


def classify(response: HttpResponse, jobs: Sequence[ForwardJob]) -> list[Outcome]:
    return [_request_outcome(response)] * len(jobs)


def test_request(integration: Integration, base_url: str, access_token: str | None) -> HttpRequest:
    # The clock is read here (and only here): a fixed, old event_time would be refused as stale, which would
    # fail the check for the wrong reason.
    bundle_id = str(integration.settings.get("bundle_id") or "")
    event = {
        "event_name": TEST_EVENT_NAME, "event_time": int(time.time()), "event_id": TEST_EVENT_ID,
        "action_source": "MOBILE_APP", "user_data": dict(TEST_USER_DATA),
        # extinfo[0] must name a platform; which one does not matter to a dry run.
        "app_data": {"advertiser_tracking_enabled": 0, "extinfo": ["i2", bundle_id] + [""] * 14},
    }
    return HttpRequest("POST", _url(integration, base_url, access_token, "/events/validate"),
                       json={"data": [event]})


def test_result(response: HttpResponse) -> ConnectionCheck:
    body = response.json()
    status = _status(body)
    if response.status == 200 and status is not None and status not in REFUSED_STATUSES:
        return ConnectionCheck(True, "Snapchat validated a test event with this token and app id (nothing recorded)")
    if response.status in BAD_TOKEN_STATUSES:
        return ConnectionCheck(False, f"Snapchat refused the access token: {_text(response.status, body)}")
    if status is None and not _reason(body):
        return ConnectionCheck(False, f"Snapchat answered HTTP {response.status} without its JSON answer")
    return ConnectionCheck(False, _text(response.status, body))


# --- the request --------------------------------------------------------------------------------


def _url(integration: Integration, base_url: str, access_token: str | None, suffix: str) -> str:
    app_id = quote(required(integration.settings, "settings.snap_app_id", NETWORK), safe="")
    token = access_token or required(integration.credentials, "credentials.access_token", NETWORK)
    return f"{base_url.rstrip('/')}/{API_VERSION}/{app_id}{suffix}?{urlencode({'access_token': token})}"


def _event(job: ForwardJob, bundle_id: str) -> dict[str, Any]:
    return {
        "event_name": job.network_event_name,
        "event_time": job.event_time_ms // 1000,
        "event_id": job.event_id,
        "action_source": "MOBILE_APP",
        "user_data": _user_data(job),
        "custom_data": order_fields(job, str.upper),
        "app_data": {
            # 1 only when the user allowed tracking under ATT (iOS 14.5+); Snap's examples send 0/1.
            "advertiser_tracking_enabled": int(job.device.att_status == "authorized"),
            "extinfo": extinfo(job, bundle_id),  # Meta's 16 slots, which Snap takes as they are
        },
    }


def _user_data(job: ForwardJob) -> dict[str, Any]:
    user_data: dict[str, Any] = {key: [job.user_hashes[key]] for key in HASHED_USER_KEYS
                                 if is_sha256_hex(job.user_hashes.get(key))}
    if job.click_id_type == CLICK_ID_TYPE and job.click_id:
        user_data["sc_click_id"] = job.click_id
    device = job.device
    if device.ip:
        user_data["client_ip_address"] = device.ip
    if device.user_agent:
        user_data["client_user_agent"] = device.user_agent
    madid = usable_advertising_id(device.idfa) or usable_advertising_id(device.gaid)
    if madid:
        user_data["madid"] = madid
    idfv = _idfv(job)
    if idfv:
        user_data["idfv"] = idfv
    return user_data


def _idfv(job: ForwardJob) -> str | None:
    """The IDFV where the event names it: an `idfv` property, or RevenueCat's `$idfv` (kept in rc_identities).
    device_id is not used: it may be an Android ID or the SDK's own UUID."""
    properties = job.properties
    identities = properties.get("rc_identities")
    for value in (properties.get("idfv"), identities.get("idfv") if isinstance(identities, dict) else None):
        if isinstance(value, str) and _UUID.fullmatch(value) and value != ZERO_AD_ID:
            return value
    return None


# --- the answer -----------------------------------------------------------------------------------


def _request_outcome(response: HttpResponse) -> Outcome:
    body = response.json()
    status = _status(body)
    retry_after = response.retry_after_seconds()
    code = str(response.status)
    if response.status == 429 or response.status >= 500:
        return RetryLater(_text(response.status, body), retry_after, code)
    if response.status in BAD_TOKEN_STATUSES:
        return Permanent(f"access token refused (alert: issue a new token): {_text(response.status, body)}", code)
    if response.status == 200:
        if status is None:
            # A 200 that is not Snap's answer (a proxy, a cut body) leaves the batch's fate unknown. Snap dedupes
            # on event_id, so sending again is safe where dropping is not.
            return RetryLater("Snapchat answered HTTP 200 without a status (malformed body)", retry_after, "200")
        if status in REFUSED_STATUSES:
            # The request itself was refused: sending the same events again gets the same answer.
            return Permanent(_text(response.status, body), status)
        return Delivered(f"status {status}, request_id {body.get('request_id')}")
    return Permanent(_text(response.status, body), code)


def _status(body: Any) -> str | None:
    status = body.get("status") if isinstance(body, dict) else None
    return status.upper() if isinstance(status, str) and status else None


def _reason(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    reason = body.get("reason") or body.get("message") or body.get("error")
    return str(reason) if reason else None


def _text(http_status: int, body: Any) -> str:
    """What Snap said, never the request URL (it carries the token)."""
    if not isinstance(body, Mapping) or (_status(body) is None and not _reason(body)):
        return f"Snapchat answered HTTP {http_status} without its JSON answer"
    return (f"Snapchat HTTP {http_status} {_status(body) or 'error'}: {_reason(body) or 'no reason'} "
            f"(request_id {body.get('request_id')})")


SPEC = NetworkSpec(
    name=NETWORK, title="Snapchat Conversions API", default_base_url="https://tr.snapchat.com",
    batch_limit=BATCH_LIMIT, settings=Settings, credentials=AccessToken,
    pre_check=pre_check, build_request=build_request, classify=classify,
    test_request=test_request, test_result=test_result,
    click_ids=(ClickId(CLICK_ID_TYPE, ("ScCid",)),), default_event_names=DEFAULT_EVENT_NAMES,
)
