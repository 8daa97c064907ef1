"""services.forwarders.meta: the Conversions API payload and Meta's answers, as pure functions."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.app_data import AppData
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.extended_device_info import ExtendedDeviceInfo
from facebook_business.adobjects.serverside.user_data import UserData

from services.forwarders import meta
from shared.forwarding.model import (
    ConnectionCheck,
    Delivered,
    Device,
    ForwardJob,
    HttpResponse,
    Integration,
    Permanent,
    RetryLater,
)

BASE = "https://graph.example.test/"
TOKEN = "EAAB-secret-token"
EVENT_MS = 1_760_000_123_456
CLICK_MS = 1_759_990_000_789
DAY_MS = 24 * 3600 * 1000


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = {"em": _sha("jane@example.com"), "ph": _sha("16505551212"), "ph_e164": _sha("+16505551212"),
          "fn": _sha("jane"), "ln": _sha("doe"), "ct": _sha("paloalto"), "st": _sha("ca"), "zp": _sha("94301"),
          "country": _sha("us"), "ge": _sha("f"), "db": _sha("19900102"), "external_id": _sha("user-42")}
INTEGRATION = Integration(app_id="app1", network="meta",
                          settings={"dataset_id": "1234567890", "bundle_id": "com.acme.app"},
                          credentials={"access_token": "stored-token"})
IOS = Device(device_id="idfv-1", idfa="6D92078A-8246-4BA4-AE5B-76104861E7DC", ip="203.0.113.7",
             user_agent="Acme/1.2 (iPhone; iOS 17.4)", os="ios", os_version="17.4", model="iPhone15,2",
             locale="en_US", att_status="authorized", app_version="1.2.0")


def make_job(**changes: Any) -> ForwardJob:
    job = ForwardJob(job_id="j1", app_id="app1", network="meta", event_id="evt-1", event_name="purchase",
                     network_event_name="Purchase", event_time_ms=EVENT_MS, device=IOS, click_id_type="fbclid",
                     click_id="IwAR3xYz-Ab_Cd09", click_time_ms=CLICK_MS, user_hashes=HASHES, revenue_amount=9.99,
                     revenue_currency="usd", properties_json='{"email": "jane@example.com", "plan": "pro"}')
    return dataclasses.replace(job, **changes)


def first_event(job: ForwardJob) -> dict[str, Any]:
    event: dict[str, Any] = meta.build_request([job], INTEGRATION, BASE, TOKEN).json["data"][0]
    return event


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(status=status, body=raw, headers=headers or {})


def meta_error(code: int, subcode: int | None = None, transient: bool = False) -> dict[str, Any]:
    error: dict[str, Any] = {"message": f"error {code}", "type": "OAuthException", "code": code,
                             "is_transient": transient, "fbtrace_id": "AbC123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


# --- the request --------------------------------------------------------------------------------


def test_request_shape_field_by_field() -> None:
    request = meta.build_request([make_job()], INTEGRATION, BASE, TOKEN)

    assert request.method == "POST"
    assert request.url == "https://graph.example.test/v26.0/1234567890/events?access_token=EAAB-secret-token"
    assert request.form is None
    assert request.json == {"data": [{
        "event_name": "Purchase",
        "event_time": EVENT_MS // 1000,
        "event_id": "evt-1",
        "action_source": "app",
        "user_data": {
            "em": [HASHES["em"]], "ph": [HASHES["ph"]], "fn": [HASHES["fn"]], "ln": [HASHES["ln"]],
            "ct": [HASHES["ct"]], "st": [HASHES["st"]], "zp": [HASHES["zp"]], "country": [HASHES["country"]],
            "ge": [HASHES["ge"]], "db": [HASHES["db"]], "external_id": [HASHES["external_id"]],
            "fbc": f"fb.1.{CLICK_MS}.IwAR3xYz-Ab_Cd09",
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Acme/1.2 (iPhone; iOS 17.4)",
            "madid": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
        },
        "custom_data": {"order_id": "evt-1", "value": 9.99, "currency": "usd"},
        "app_data": {
            "advertiser_tracking_enabled": True,
            "application_tracking_enabled": True,
            "extinfo": ["i2", "com.acme.app", "1.2.0", "", "17.4", "iPhone15,2", "en_US", "", "", "", "", "", "", "",
                        "", ""],
        },
    }]}


def test_event_equals_what_metas_official_sdk_builds() -> None:
    job = make_job(user_hashes={key: HASHES[key] for key in ("em", "ph", "external_id")})
    sdk_event = Event(
        event_name="Purchase", event_time=EVENT_MS // 1000, event_id="evt-1", action_source=ActionSource.APP,
        user_data=UserData(emails=[HASHES["em"]], phones=[HASHES["ph"]], external_ids=[HASHES["external_id"]],
                           fbc=meta.fbc(job), client_ip_address=IOS.ip, client_user_agent=IOS.user_agent,
                           madid=IOS.idfa),
        custom_data=CustomData(value=9.99, currency="usd", order_id="evt-1"),
        app_data=AppData(advertiser_tracking_enabled=True, application_tracking_enabled=True,
                         extinfo=ExtendedDeviceInfo(ext_info_version="i2", app_package_name="com.acme.app",
                                                    short_version="1.2.0", os_version="17.4",
                                                    device_model_name="iPhone15,2", locale="en_US")),
    ).normalize()
    sdk_event["app_data"]["extinfo"] = [slot if slot is not None else "" for slot in sdk_event["app_data"]["extinfo"]]

    assert first_event(job) == sdk_event


@pytest.mark.parametrize(("os_name", "version_slot"), [("ios", "i2"), ("android", "a2"), ("iOS", "i2")])
def test_extinfo_has_16_slots_in_metas_order(os_name: str, version_slot: str) -> None:
    device = dataclasses.replace(IOS, os=os_name, os_version="14", model="Pixel 8", locale="de_DE", app_version="3.1")
    slots = meta.extinfo(make_job(device=device), "com.acme.app")

    assert len(slots) == 16
    assert slots[0] == version_slot
    assert (slots[1], slots[2], slots[4], slots[5], slots[6]) == ("com.acme.app", "3.1", "14", "Pixel 8", "de_DE")
    assert [slots[i] for i in (3, *range(7, 16))] == [""] * 10
    assert all(isinstance(slot, str) for slot in slots)


def test_extinfo_unknowns_are_empty_strings() -> None:
    device = Device(device_id="d", gaid="38400000-8cf0-11bd-b23e-10b96e40000d")
    assert meta.extinfo(make_job(device=device), "") == ["a2"] + [""] * 15


@pytest.mark.parametrize("fbclid", ["IwAR3xYz-Ab_Cd09", "iwar3xyz-ab_cd09", "IWAR3XYZ-AB_CD09", "Ab.Cd~_-09"])
def test_fbc_keeps_the_fbclid_byte_for_byte(fbclid: str) -> None:
    assert first_event(make_job(click_id=fbclid))["user_data"]["fbc"] == f"fb.1.{CLICK_MS}.{fbclid}"


def test_fbc_falls_back_to_the_event_time_without_a_click_time() -> None:
    assert meta.fbc(make_job(click_time_ms=None)) == f"fb.1.{EVENT_MS}.IwAR3xYz-Ab_Cd09"


def test_no_fbc_without_an_fbclid() -> None:
    assert "fbc" not in first_event(make_job(click_id_type="gclid", click_id="Cj0K"))["user_data"]


def test_hashes_pass_through_unchanged_and_only_metas() -> None:
    upper = _sha("other@example.com").upper()
    job = make_job(user_hashes={"em": upper, "ph_e164": HASHES["ph_e164"], "fn": "Jane", "ln": _sha("doe")[:63]})
    user_data = first_event(job)["user_data"]

    assert user_data["em"] == [upper]  # never re-hashed, never re-cased
    assert "ph_e164" not in user_data and HASHES["ph_e164"] not in orjson.dumps(user_data).decode()
    assert "fn" not in user_data and "ln" not in user_data  # not a SHA-256: never leaves apprefer


def test_no_raw_personal_data_and_no_token_in_the_body() -> None:
    job = make_job(user_hashes={**HASHES, "fn": "Jane"})
    request = meta.build_request([job], INTEGRATION, BASE, TOKEN)
    body = orjson.dumps(request.json).decode()

    for secret in ("jane@example.com", "Jane", TOKEN, "stored-token", "16505551212"):
        assert secret not in body
    assert parse_qs(urlsplit(request.url).query) == {"access_token": [TOKEN]}


def test_stored_token_is_used_when_none_is_given() -> None:
    request = meta.build_request([make_job()], INTEGRATION, BASE, None)
    assert parse_qs(urlsplit(request.url).query) == {"access_token": ["stored-token"]}


@pytest.mark.parametrize(("att_status", "enabled"), [("authorized", True), ("denied", False),
                                                     ("not_determined", False), ("restricted", False), (None, False)])
def test_advertiser_tracking_follows_att(att_status: str | None, enabled: bool) -> None:
    job = make_job(device=dataclasses.replace(IOS, att_status=att_status))
    app_data = first_event(job)["app_data"]
    assert app_data["advertiser_tracking_enabled"] is enabled
    assert app_data["application_tracking_enabled"] is True


def test_madid_from_gaid_and_the_zero_id_is_not_sent() -> None:
    zero = "00000000-0000-0000-0000-000000000000"
    gaid = Device(device_id="d", idfa=zero, gaid="38400000-8cf0-11bd-b23e-10b96e40000d")
    assert first_event(make_job(device=gaid))["user_data"]["madid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"
    assert "madid" not in first_event(make_job(device=Device(device_id="d", idfa=zero)))["user_data"]


def test_anon_id_comes_from_the_fb_anon_id_property() -> None:
    job = make_job(properties_json='{"fb_anon_id": "XZ1234-ab"}')
    assert first_event(job)["user_data"]["anon_id"] == "XZ1234-ab"


def test_custom_data_without_revenue_keeps_the_order_id() -> None:
    job = make_job(revenue_amount=None, revenue_currency=None)
    assert first_event(job)["custom_data"] == {"order_id": "evt-1"}


@pytest.mark.parametrize(("settings", "credentials", "missing"), [
    ({}, {"access_token": "t"}, "settings.dataset_id"),
    ({"dataset_id": "1"}, {}, "credentials.access_token"),
])
def test_missing_configuration_is_named(settings: dict[str, str], credentials: dict[str, str], missing: str) -> None:
    integration = Integration(app_id="app1", network="meta", settings=settings, credentials=credentials)
    with pytest.raises(ValueError, match=re.escape(missing)):
        meta.build_request([make_job()], integration, BASE, None)
    with pytest.raises(ValueError, match=re.escape(missing)):  # "GET /v26.0/" would read another object
        meta.test_request(integration, BASE, None)


def test_batch_keeps_job_order() -> None:
    jobs = [make_job(event_id=f"evt-{i}") for i in range(3)]
    events = meta.build_request(jobs, INTEGRATION, BASE, TOKEN).json["data"]
    assert [event["event_id"] for event in events] == ["evt-0", "evt-1", "evt-2"]
    assert meta.BATCH_LIMIT == 1000 and meta.NETWORK == "meta"


# --- before the call ----------------------------------------------------------------------------


@pytest.mark.parametrize(("age_ms", "stale"), [(0, False), (6 * DAY_MS, False), (7 * DAY_MS - 3600_000, False),
                                               (7 * DAY_MS, True), (8 * DAY_MS, True), (30 * DAY_MS, True)])
def test_pre_check_drops_events_older_than_7_days(age_ms: int, stale: bool) -> None:
    outcome = meta.pre_check(make_job(), EVENT_MS + age_ms)
    if stale:
        assert isinstance(outcome, Permanent) and outcome.reason.startswith("stale")
    else:
        assert outcome is None


@pytest.mark.parametrize(("ahead_ms", "retry"), [(30_000, False), (60_000, False), (61_000, True), (DAY_MS, True)])
def test_pre_check_holds_events_from_the_future_until_their_time(ahead_ms: int, retry: bool) -> None:
    outcome = meta.pre_check(make_job(), EVENT_MS - ahead_ms)
    if retry:
        assert isinstance(outcome, RetryLater) and outcome.after_seconds == ahead_ms / 1000
    else:
        assert outcome is None


@pytest.mark.parametrize(("device", "ok"), [
    (Device(device_id="d", os="ios"), True),
    (Device(device_id="d", os="android"), True),
    (Device(device_id="d", idfa="6D92078A-8246-4BA4-AE5B-76104861E7DC"), True),
    (Device(device_id="d", gaid="38400000-8cf0-11bd-b23e-10b96e40000d"), True),
    (Device(device_id="d"), False),
    (Device(device_id="d", os="windows"), False),
    (Device(device_id="d", idfa="00000000-0000-0000-0000-000000000000"), False),
])
def test_pre_check_needs_a_platform_for_extinfo(device: Device, ok: bool) -> None:
    outcome = meta.pre_check(make_job(device=device), EVENT_MS)
    assert outcome is None if ok else isinstance(outcome, Permanent) and outcome.error_code == "no_platform"


# --- the answer -----------------------------------------------------------------------------------

CLASSIFICATION = [
    (200, {"events_received": 2, "messages": [], "fbtrace_id": "Ab"}, Delivered),
    *[(400, meta_error(code), RetryLater) for code in (1, 2, 4, 17, 32, 341, 368, 613, 80004)],
    (400, meta_error(100, 2804003), Permanent),  # timestamp too old
    (400, meta_error(100, 2804019), Permanent),
    (400, meta_error(100), Permanent),
    (400, meta_error(102), Permanent),
    (403, meta_error(10), Permanent),
    (403, meta_error(200), Permanent),
    (403, meta_error(294), Permanent),
    (403, meta_error(299), Permanent),
    (400, meta_error(190, 463), Permanent),
    (400, meta_error(999, transient=True), RetryLater),
    (400, meta_error(999), Permanent),
    (500, meta_error(999), RetryLater),
    (500, b"<html>Internal Server Error</html>", RetryLater),
    (502, b"", RetryLater),
    (503, b"upstream timeout", RetryLater),
    (400, b"<html>Bad Request</html>", Permanent),
    (404, b"not found", Permanent),
    (200, b"{\"events_rec", RetryLater),
    (200, {"unexpected": True}, RetryLater),
    (429, b"slow down", RetryLater),
]


@pytest.mark.parametrize(("status", "body", "expected"), CLASSIFICATION)
def test_classification_table(status: int, body: Any, expected: type) -> None:
    jobs = [make_job(event_id="a"), make_job(event_id="b")]
    outcomes = meta.classify(response(status, body), jobs)
    assert len(outcomes) == 2
    assert all(type(outcome) is expected for outcome in outcomes)
    assert outcomes[0] == outcomes[1]  # Meta answers per request


def test_token_expired_is_permanent_and_says_so() -> None:
    [outcome] = meta.classify(response(400, meta_error(190, 463)), [make_job()])
    assert isinstance(outcome, Permanent)
    assert "token expired or revoked" in outcome.reason and outcome.error_code == "190/463"


def test_malformed_4xx_says_what_it_got() -> None:
    [outcome] = meta.classify(response(400, b"<html>"), [make_job()])
    assert isinstance(outcome, Permanent) and "HTTP 400" in outcome.reason


@pytest.mark.parametrize("body", [b"busy", meta_error(4), meta_error(999)])
def test_429_honours_retry_after(body: Any) -> None:
    [outcome] = meta.classify(response(429, body, {"Retry-After": "120"}), [make_job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds == 120.0


def test_rate_limit_code_carries_the_error_code() -> None:
    [outcome] = meta.classify(response(400, meta_error(613)), [make_job()])
    assert isinstance(outcome, RetryLater) and outcome.error_code == "613" and outcome.after_seconds is None


# --- Test Connection ----------------------------------------------------------------------------


def test_test_request_reads_the_dataset_and_records_nothing() -> None:
    request = meta.test_request(INTEGRATION, BASE, TOKEN)
    assert request.method == "GET" and request.json is None
    assert request.url == "https://graph.example.test/v26.0/1234567890?access_token=EAAB-secret-token"


def test_test_result() -> None:
    assert meta.test_result(response(200, {"id": "1234567890", "name": "Acme app"})) == ConnectionCheck(
        True, "Meta dataset Acme app is reachable with this token")
    failed = meta.test_result(response(400, {"error": {"message": "Invalid OAuth access token - Cannot parse",
                                                       "code": 190, "fbtrace_id": "X"}}))
    assert not failed.ok and "Invalid OAuth access token - Cannot parse" in failed.detail
    assert meta.test_result(response(502, b"<html>")) == ConnectionCheck(
        False, "Meta answered HTTP 502 without an error message")
