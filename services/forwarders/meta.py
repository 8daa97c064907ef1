"""Meta Conversions API (app events): jobs in, one events request out, one outcome per job back. Pure.

Integration: `settings.dataset_id` (the dataset / pixel id the events go to), optional
`settings.bundle_id` (extinfo's package name); `credentials.access_token` (a system-user token) is used
when the caller passes no token. The token travels in the URL query only, never in the JSON body. A missing
dataset id or token raises ValueError naming it (the engine dead-letters the batch with that reason).

Meta answers per request: one error (a bad parameter in any event, a stale timestamp) rejects the whole
batch, so every job of a request shares its outcome, and events older than Meta's 7 days are filtered
out before the call by `pre_check`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

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
from shared.forwarding.payload import is_sha256_hex, order_fields, required, too_old, usable_advertising_id
from shared.networks.spec import AccessToken, ClickId, NetworkSpec, UnattributedOptIn

NETWORK = "meta"
BATCH_LIMIT = 1_000
GRAPH_VERSION = "v26.0"

# Meta refuses the whole request when any event_time is more than 7 days old.
MAX_EVENT_AGE_DAYS = 7
# Events stamped in the future are refused too (Meta's wording not confirmed from a primary source); a small
# clock skew is tolerated.
FUTURE_TOLERANCE_MS = 60 * 1000

# user_data keys that hold SHA-256 hashes, sent as single-element lists as Meta's SDK does. The gateway
# also stores ph_e164 (TikTok's phone form): it is not Meta's and is never sent here.
HASHED_USER_KEYS = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "ge", "db", "external_id")

RETRY_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613, 80004})
PERMANENT_CODES = frozenset({10, 100, 102, 190, *range(200, 300)})
TOKEN_EXPIRED_CODE = 190

DEFAULT_EVENT_NAMES = {"purchase": "Purchase", "trial_start": "StartTrial", "subscribe": "Subscribe",
                       "registration": "CompleteRegistration", "add_to_cart": "AddToCart"}

EXTINFO_SLOTS = 16


class Settings(UnattributedOptIn):
    dataset_id: str = Field(min_length=1, max_length=64, description="The dataset (pixel) id the events go to")
    bundle_id: str | None = Field(None, max_length=255, description="The app's package name, for extinfo")


def pre_check(job: ForwardJob, now_ms: int) -> Outcome | None:
    """Keep out what would make Meta refuse the whole batch: one bad event must not sink the others."""
    stale = too_old(job, now_ms, MAX_EVENT_AGE_DAYS, "Meta")
    if stale is not None:
        return stale
    age_ms = now_ms - job.event_time_ms
    if -age_ms > FUTURE_TOLERANCE_MS:
        # A device clock running ahead: the event becomes acceptable once its time has come.
        return RetryLater(f"event_time is {-age_ms // 1000} s in the future (device clock ahead?)",
                          after_seconds=-age_ms / 1000, error_code="future")
    if not _extinfo_version(job):
        return Permanent("unknown platform (no device os ios/android, IDFA or GAID): Meta needs extinfo[0]",
                         error_code="no_platform")
    return None


def build_request(jobs: Sequence[ForwardJob], integration: Integration, base_url: str,
                  access_token: str | None) -> HttpRequest:
    bundle_id = str(integration.settings.get("bundle_id") or "")
    events = [_event(job, bundle_id) for job in jobs]
    return HttpRequest("POST", _url(integration, base_url, access_token, "/events"), json={"data": events})


def classify(response: HttpResponse, jobs: Sequence[ForwardJob]) -> list[Outcome]:
    return [_request_outcome(response, len(jobs))] * len(jobs)


def test_request(integration: Integration, base_url: str, access_token: str | None) -> HttpRequest:
    # Reading the dataset proves the token and the id without recording anything. An events call with
    # test_event_code would not do: Meta documents that such events are not dropped but used for ads.
    return HttpRequest("GET", _url(integration, base_url, access_token, ""))


def test_result(response: HttpResponse) -> ConnectionCheck:
    body = response.json()
    if response.status == 200 and isinstance(body, dict) and "error" not in body:
        name = body.get("name") or body.get("id") or "the dataset"
        return ConnectionCheck(True, f"Meta dataset {name} is reachable with this token")
    error = _error_of(body)
    if error is None:
        return ConnectionCheck(False, f"Meta answered HTTP {response.status} without an error message")
    return ConnectionCheck(False, _error_text(error))


# --- the request --------------------------------------------------------------------------------


def _url(integration: Integration, base_url: str, access_token: str | None, suffix: str) -> str:
    dataset_id = quote(required(integration.settings, "settings.dataset_id", NETWORK), safe="")
    token = access_token or required(integration.credentials, "credentials.access_token", NETWORK)
    return f"{base_url.rstrip('/')}/{GRAPH_VERSION}/{dataset_id}{suffix}?{urlencode({'access_token': token})}"


def _event(job: ForwardJob, bundle_id: str) -> dict[str, Any]:
    custom_data = order_fields(job, str.lower)
    return {
        "event_name": job.network_event_name,
        "event_time": job.event_time_ms // 1000,
        "event_id": job.event_id,
        "action_source": "app",
        "user_data": _user_data(job),
        "custom_data": custom_data,
        "app_data": {
            # ATT "authorized" is the only state in which the user allowed tracking (iOS 14.5+).
            "advertiser_tracking_enabled": job.device.att_status == "authorized",
            "application_tracking_enabled": True,
            "extinfo": extinfo(job, bundle_id),
        },
    }


def _user_data(job: ForwardJob) -> dict[str, Any]:
    user_data: dict[str, Any] = {key: [value] for key, value in _hashes(job.user_hashes).items()}
    if job.click_id_type == "fbclid" and job.click_id:
        user_data["fbc"] = fbc(job)
    device = job.device
    if device.ip:
        user_data["client_ip_address"] = device.ip
    if device.user_agent:
        user_data["client_user_agent"] = device.user_agent
    madid = usable_advertising_id(device.idfa) or usable_advertising_id(device.gaid)
    if madid:
        user_data["madid"] = madid
    anon_id = job.properties.get("fb_anon_id")
    if isinstance(anon_id, str) and anon_id:
        user_data["anon_id"] = anon_id
    return user_data


def _hashes(user_hashes: Mapping[str, str]) -> dict[str, str]:
    """The hashes Meta knows, as stored. Anything not 64 hex characters is dropped: only hashes leave."""
    return {key: user_hashes[key] for key in HASHED_USER_KEYS
            if is_sha256_hex(user_hashes.get(key))}


def fbc(job: ForwardJob) -> str:
    """`fb.1.<click time ms>.<fbclid>`; the fbclid byte-for-byte, since Meta compares it case-sensitively."""
    return f"fb.1.{job.click_time_ms or job.event_time_ms}.{job.click_id}"


def extinfo(job: ForwardJob, bundle_id: str) -> list[str]:
    """Meta's 16-slot extended device info, in its fixed order; "" where apprefer does not know."""
    device = job.device
    slots = [""] * EXTINFO_SLOTS
    slots[0] = _extinfo_version(job)
    slots[1] = bundle_id
    slots[2] = device.app_version or ""  # short version; the long version (build number) is unknown
    slots[4] = device.os_version or ""
    slots[5] = device.model or ""
    slots[6] = device.locale or ""
    return slots


def _extinfo_version(job: ForwardJob) -> str:
    os_name = (job.device.os or "").lower()
    if os_name == "ios" or (not os_name and usable_advertising_id(job.device.idfa)):
        return "i2"
    if os_name == "android" or (not os_name and usable_advertising_id(job.device.gaid)):
        return "a2"
    return ""


# --- the answer -----------------------------------------------------------------------------------


def _request_outcome(response: HttpResponse, job_count: int) -> Outcome:
    body = response.json()
    retry_after = response.retry_after_seconds()
    error = _error_of(body)
    if error is not None:
        return _error_outcome(response.status, error, retry_after)
    if response.status == 200 and isinstance(body, dict) and "events_received" in body:
        return Delivered(f"events_received {body['events_received']} of {job_count}, "
                         f"fbtrace_id {body.get('fbtrace_id')}")
    if response.status == 429 or response.status >= 500:
        return RetryLater(f"Meta answered HTTP {response.status}", retry_after, str(response.status))
    if response.status == 200:
        # A 200 that is not Meta's answer (a proxy, a cut body) leaves the batch's fate unknown. Meta
        # dedupes on event_id + event_name for 48 h, so sending again is safe where dropping is not.
        return RetryLater("Meta answered HTTP 200 without events_received (malformed body)", retry_after, "200")
    return Permanent(f"Meta answered HTTP {response.status} with a body that is not its error JSON",
                     str(response.status))


def _error_of(body: Any) -> dict[str, Any] | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _error_outcome(status: int, error: Mapping[str, Any], retry_after: float | None) -> Outcome:
    code = _int(error.get("code"))
    error_code = _code_text(error)
    text = _error_text(error)
    if error.get("is_transient") is True or code in RETRY_CODES:
        return RetryLater(text, retry_after, error_code)
    if code == TOKEN_EXPIRED_CODE:
        return Permanent(f"access token expired or revoked (alert: issue a new token): {text}", error_code)
    if code in PERMANENT_CODES:
        return Permanent(text, error_code)
    if status == 429 or status >= 500:
        return RetryLater(text, retry_after, error_code)
    return Permanent(text, error_code)


def _error_text(error: Mapping[str, Any]) -> str:
    message = error.get("message") or "no message"
    if error.get("error_user_msg"):
        message = f"{message} ({error['error_user_msg']})"
    return f"Meta error {_code_text(error)}: {message} (fbtrace_id {error.get('fbtrace_id')})"


def _code_text(error: Mapping[str, Any]) -> str:
    code, subcode = error.get("code"), error.get("error_subcode")
    return f"{code}/{subcode}" if subcode is not None else str(code)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


SPEC = NetworkSpec(
    name=NETWORK, title="Meta Conversions API", default_base_url="https://graph.facebook.com",
    batch_limit=BATCH_LIMIT, settings=Settings, credentials=AccessToken,
    pre_check=pre_check, build_request=build_request, classify=classify,
    test_request=test_request, test_result=test_result,
    click_ids=(ClickId("fbclid"),), default_event_names=DEFAULT_EVENT_NAMES,
)
