"""services.forwarders.snapchat: the Conversions API v3 payload and Snap's answers, as pure functions."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from pydantic import ValidationError

from services.forwarders import meta, snapchat
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
from shared.networks.registry import Registry, contract_problems

BASE = "https://snap.example.test/"
TOKEN = "snap-secret-token"
APP = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
EVENT_MS = 1_760_000_123_456
DAY_MS = 24 * 3600 * 1000
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
IDFV = "A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF"
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
ZERO = "00000000-0000-0000-0000-000000000000"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = {"em": _sha("jane@example.com"), "ph": _sha("16505551212"), "ph_e164": _sha("+16505551212"),
          "fn": _sha("jane"), "external_id": _sha("user-42")}
INTEGRATION = Integration(app_id="app1", network="snapchat", settings={"snap_app_id": APP, "bundle_id": "com.acme.app"},
                          credentials={"access_token": "stored-token"})
IOS = Device(device_id="idfv-1", idfa=IDFA, ip="203.0.113.7", user_agent="Acme/1.2 (iPhone; iOS 17.4)", os="ios",
             os_version="17.4", model="iPhone15,2", locale="en_US", att_status="authorized", app_version="1.2.0")


def make_job(**changes: Any) -> ForwardJob:
    job = ForwardJob(job_id="j1", app_id="app1", network="snapchat", event_id="evt-1", event_name="purchase",
                     network_event_name="PURCHASE", event_time_ms=EVENT_MS, device=IOS, click_id_type="sccid",
                     click_id="3f7c1a2b-ScCid-Value_09", click_time_ms=EVENT_MS - 60_000, user_hashes=HASHES,
                     revenue_amount=9.99, revenue_currency="usd",
                     properties_json=orjson.dumps({"email": "jane@example.com", "idfv": IDFV}).decode())
    return dataclasses.replace(job, **changes)


def first_event(job: ForwardJob, integration: Integration = INTEGRATION) -> dict[str, Any]:
    event: dict[str, Any] = snapchat.build_request([job], integration, BASE, TOKEN).json["data"][0]
    return event


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, body if isinstance(body, bytes) else orjson.dumps(body), headers or {})


def snap(status: str, reason: str = "") -> dict[str, Any]:
    return {"status": status, "reason": reason, "request_id": "req-42"}


# --- the spec -------------------------------------------------------------------------------------


def test_spec_keeps_the_contract() -> None:
    assert contract_problems(snapchat.SPEC) == []
    spec = snapchat.SPEC
    assert (spec.name, spec.default_base_url, spec.batch_limit) == ("snapchat", "https://tr.snapchat.com", 2000)
    assert spec.forwards_unattributed


def test_sccid_parameter_is_the_sccid_click_id_and_clashes_with_no_other_network() -> None:
    registry = Registry.of([("meta", meta.SPEC), ("snapchat", snapchat.SPEC)])
    assert registry.refused == {}
    assert registry.click_id_type_of("ScCid") == registry.click_id_type_of("sccid") == "sccid"
    assert registry.network_of_click_id_type("sccid") == "snapchat"


@pytest.mark.parametrize(("event_name", "snap_name"), [
    ("purchase", "PURCHASE"), ("subscribe", "SUBSCRIBE"), ("trial_start", "START_TRIAL"), ("registration", "SIGN_UP"),
    ("add_to_cart", "ADD_CART"), ("level_complete", "LEVEL_COMPLETE"), ("install", "APP_INSTALL"),
])
def test_default_event_names_are_snaps_upper_case_names(event_name: str, snap_name: str) -> None:
    assert snapchat.SPEC.event_name(event_name, {}, {}) == snap_name
    assert snapchat.SPEC.event_name(event_name, {}, {event_name: "CUSTOM_EVENT_1"}) == "CUSTOM_EVENT_1"


def test_settings_and_credentials_models() -> None:
    assert snapchat.Settings(snap_app_id=f" {APP} ").snap_app_id == APP
    for bad in ({}, {"snap_app_id": ""}, {"snap_app_id": APP, "snap-app-id": APP}):
        with pytest.raises(ValidationError):
            snapchat.Settings(**bad)
    credentials = snapchat.SPEC.credentials(access_token=TOKEN)
    assert TOKEN not in repr(credentials) and credentials.access_token.get_secret_value() == TOKEN
    for bad_credentials in ({"access_token": ""}, {"access_token": TOKEN, "refresh_token": "x"}):
        with pytest.raises(ValidationError):
            snapchat.SPEC.credentials(**bad_credentials)


# --- the request --------------------------------------------------------------------------------


def test_request_shape_field_by_field() -> None:
    request = snapchat.build_request([make_job()], INTEGRATION, BASE, TOKEN)

    assert request.method == "POST"
    assert request.url == f"https://snap.example.test/v3/{APP}/events?access_token=snap-secret-token"
    assert request.headers == {} and request.form is None
    assert request.json == {"data": [{
        "event_name": "PURCHASE",
        "event_time": EVENT_MS // 1000,
        "event_id": "evt-1",
        "action_source": "MOBILE_APP",
        "user_data": {
            "em": [HASHES["em"]], "ph": [HASHES["ph"]],
            "sc_click_id": "3f7c1a2b-ScCid-Value_09",
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Acme/1.2 (iPhone; iOS 17.4)",
            "madid": IDFA,
            "idfv": IDFV,
        },
        "custom_data": {"order_id": "evt-1", "value": 9.99, "currency": "USD"},
        "app_data": {
            "advertiser_tracking_enabled": 1,
            "extinfo": ["i2", "com.acme.app", "1.2.0", "", "17.4", "iPhone15,2", "en_US", "", "", "", "", "", "", "",
                        "", ""],
        },
    }]}


def test_extinfo_is_metas() -> None:
    job = make_job(device=Device(device_id="d", gaid=GAID, os="android", os_version="14", model="Pixel 8"))
    assert first_event(job)["app_data"]["extinfo"] == meta.extinfo(job, "com.acme.app")
    assert first_event(job)["app_data"]["extinfo"][0] == "a2"


def test_hashes_are_snaps_only_and_only_hashes() -> None:
    upper = _sha("other@example.com").upper()
    job = make_job(user_hashes={"em": upper, "ph": "16505551212", "ph_e164": HASHES["ph_e164"], "fn": HASHES["fn"]})
    user_data = first_event(job)["user_data"]

    assert user_data["em"] == [upper]  # never re-hashed, never re-cased
    assert "ph" not in user_data  # not a SHA-256: never leaves apprefer
    for key in ("ph_e164", "fn", "external_id"):
        assert key not in user_data
    assert HASHES["ph_e164"] not in orjson.dumps(user_data).decode()


def test_no_raw_personal_data_and_no_token_in_the_body() -> None:
    request = snapchat.build_request([make_job()], INTEGRATION, BASE, TOKEN)
    body = orjson.dumps(request.json).decode()

    for secret in ("jane@example.com", "16505551212", TOKEN, "stored-token"):
        assert secret not in body
    assert parse_qs(urlsplit(request.url).query) == {"access_token": [TOKEN]}


def test_stored_token_is_used_when_none_is_given_and_query_characters_are_escaped() -> None:
    request = snapchat.build_request([make_job()], INTEGRATION, BASE, None)
    assert parse_qs(urlsplit(request.url).query) == {"access_token": ["stored-token"]}
    odd = dataclasses.replace(INTEGRATION, settings={"snap_app_id": "a/b?c"})
    request = snapchat.build_request([make_job()], odd, BASE, "t&x=1")
    assert urlsplit(request.url).path == "/v3/a%2Fb%3Fc/events"
    assert parse_qs(urlsplit(request.url).query) == {"access_token": ["t&x=1"]}


@pytest.mark.parametrize(("click_id_type", "click_id", "sent"), [
    ("sccid", "abc-123", True), ("sccid", "", False), ("sccid", None, False), ("fbclid", "IwAR", False),
    (None, None, False),
])
def test_sc_click_id_only_for_snaps_click_id(click_id_type: str | None, click_id: str | None, sent: bool) -> None:
    user_data = first_event(make_job(click_id_type=click_id_type, click_id=click_id))["user_data"]
    assert user_data.get("sc_click_id") == (click_id if sent else None)


def test_sc_click_id_is_sent_byte_for_byte() -> None:
    assert first_event(make_job(click_id="Ab.Cd~_-09XYZ"))["user_data"]["sc_click_id"] == "Ab.Cd~_-09XYZ"


def test_madid_from_gaid_and_the_zero_id_is_not_sent() -> None:
    assert first_event(make_job(device=Device(device_id="d", idfa=ZERO, gaid=GAID)))["user_data"]["madid"] == GAID
    assert "madid" not in first_event(make_job(device=Device(device_id="d", idfa=ZERO)))["user_data"]


@pytest.mark.parametrize(("properties", "idfv"), [
    ({"idfv": IDFV}, IDFV),
    ({"rc_identities": {"idfv": IDFV, "app_user_id": "u1"}}, IDFV),
    ({"idfv": "not-a-uuid"}, None),
    ({"idfv": ZERO}, None),
    ({"rc_identities": "junk"}, None),
    ({}, None),
])
def test_idfv_comes_from_the_event_never_from_device_id(properties: dict[str, Any], idfv: str | None) -> None:
    job = make_job(device=dataclasses.replace(IOS, device_id=IDFV), properties_json=orjson.dumps(properties).decode())
    assert first_event(job)["user_data"].get("idfv") == idfv


def test_a_bare_device_sends_an_empty_user_data() -> None:
    job = make_job(device=Device(device_id="d"), user_hashes={}, click_id_type=None, click_id=None,
                   properties_json="{}")
    assert first_event(job)["user_data"] == {}


@pytest.mark.parametrize(("att_status", "enabled"), [("authorized", 1), ("denied", 0), ("restricted", 0), (None, 0)])
def test_advertiser_tracking_follows_att(att_status: str | None, enabled: int) -> None:
    flag = first_event(make_job(device=dataclasses.replace(IOS, att_status=att_status)))["app_data"][
        "advertiser_tracking_enabled"]
    assert flag == enabled and type(flag) is int


def test_custom_data_without_revenue_keeps_the_order_id() -> None:
    assert first_event(make_job(revenue_amount=None, revenue_currency=None))["custom_data"] == {"order_id": "evt-1"}


@pytest.mark.parametrize(("settings", "credentials", "missing"), [
    ({}, {"access_token": "t"}, "settings.snap_app_id"),
    ({"snap_app_id": ""}, {"access_token": "t"}, "settings.snap_app_id"),
    ({"snap_app_id": APP}, {}, "credentials.access_token"),
])
def test_missing_configuration_is_named(settings: dict[str, str], credentials: dict[str, str], missing: str) -> None:
    integration = Integration(app_id="app1", network="snapchat", settings=settings, credentials=credentials)
    with pytest.raises(ValueError, match=re.escape(missing)):
        snapchat.build_request([make_job()], integration, BASE, None)
    with pytest.raises(ValueError, match=re.escape(missing)):
        snapchat.test_request(integration, BASE, None)


def test_batch_keeps_job_order() -> None:
    jobs = [make_job(event_id=f"evt-{i}") for i in range(3)]
    events = snapchat.build_request(jobs, INTEGRATION, BASE, TOKEN).json["data"]
    assert [event["event_id"] for event in events] == ["evt-0", "evt-1", "evt-2"]


# --- before the call ----------------------------------------------------------------------------


@pytest.mark.parametrize(("age_ms", "stale"), [(0, False), (-DAY_MS, False), (30 * DAY_MS, False),
                                               (37 * DAY_MS - 3600_000, False), (37 * DAY_MS, True),
                                               (38 * DAY_MS, True), (400 * DAY_MS, True)])
def test_pre_check_drops_events_older_than_37_days(age_ms: int, stale: bool) -> None:
    outcome = snapchat.pre_check(make_job(), EVENT_MS + age_ms)
    if stale:
        assert isinstance(outcome, Permanent) and outcome.reason.startswith("stale")
        assert outcome.error_code == "stale"
    else:
        assert outcome is None


# --- the answer -----------------------------------------------------------------------------------

CLASSIFICATION = [
    (200, snap("VALID", "Events have been processed successfully."), Delivered),
    (200, snap("SUCCESS"), Delivered),  # v2's word: neither INVALID nor FAILED
    (200, snap("valid"), Delivered),
    (200, snap("PARTIAL"), Delivered),
    (200, snap("INVALID", "event_name: unknown value"), Permanent),
    (200, snap("FAILED", "Request payload error"), Permanent),
    (400, snap("INVALID", "data[0]: action_source must be MOBILE_APP"), Permanent),
    (400, {"message": "bad request"}, Permanent),
    (400, b"<html>Bad Request</html>", Permanent),
    (401, snap("FAILED", "Invalid access token"), Permanent),
    (403, {"reason": "token has no access to this app"}, Permanent),
    (403, b"", Permanent),
    (404, b"not found", Permanent),
    (429, snap("FAILED", "Too many requests"), RetryLater),
    (429, b"slow down", RetryLater),
    (500, snap("FAILED", "internal error"), RetryLater),
    (502, b"<html>Bad Gateway</html>", RetryLater),
    (503, b"", RetryLater),
    (200, b'{"status": "VAL', RetryLater),  # cut body: fate unknown, dedupe makes resending safe
    (200, {"unexpected": True}, RetryLater),
    (200, [1, 2], RetryLater),
    (200, b"", RetryLater),
]


@pytest.mark.parametrize(("status", "body", "expected"), CLASSIFICATION)
def test_classification_table(status: int, body: Any, expected: type) -> None:
    jobs = [make_job(event_id="a"), make_job(event_id="b")]
    outcomes = snapchat.classify(response(status, body), jobs)
    assert len(outcomes) == 2
    assert all(type(outcome) is expected for outcome in outcomes)
    assert outcomes[0] == outcomes[1]  # Snap answers per request


def test_classify_with_no_jobs_is_empty() -> None:
    assert snapchat.classify(response(200, snap("VALID")), []) == []


def test_delivered_and_refused_carry_snaps_words() -> None:
    [delivered] = snapchat.classify(response(200, snap("VALID")), [make_job()])
    assert delivered == Delivered("status VALID, request_id req-42")
    [refused] = snapchat.classify(response(200, snap("INVALID", "event_time too old")), [make_job()])
    assert isinstance(refused, Permanent) and refused.error_code == "INVALID"
    assert "event_time too old" in refused.reason and "req-42" in refused.reason


@pytest.mark.parametrize("status", [401, 403])
def test_bad_token_is_permanent_and_says_alert(status: int) -> None:
    [outcome] = snapchat.classify(response(status, snap("FAILED", "Invalid access token")), [make_job()])
    assert isinstance(outcome, Permanent) and outcome.error_code == str(status)
    assert "alert" in outcome.reason and "Invalid access token" in outcome.reason


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_answers_honour_retry_after(status: int) -> None:
    [outcome] = snapchat.classify(response(status, b"busy", {"Retry-After": "120"}), [make_job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds == 120.0 and outcome.error_code == str(status)
    [outcome] = snapchat.classify(response(status, b"busy"), [make_job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds is None


def test_malformed_4xx_says_what_it_got() -> None:
    [outcome] = snapchat.classify(response(400, b"<html>"), [make_job()])
    assert outcome == Permanent("Snapchat answered HTTP 400 without its JSON answer", "400")


def test_the_token_is_in_no_outcome_text() -> None:
    texts: list[str] = []
    for status, body, _ in CLASSIFICATION:
        for outcome in snapchat.classify(response(status, body), [make_job()]):
            texts.append((outcome.detail or "") if isinstance(outcome, Delivered) else outcome.reason)
    for body in (snap("VALID"), snap("INVALID", "bad"), b"<html>"):
        for status in (200, 401, 500):
            texts.append(snapchat.test_result(response(status, body)).detail)
    with pytest.raises(ValueError) as missing:  # the configuration error the engine dead-letters with
        snapchat.build_request([make_job()], dataclasses.replace(INTEGRATION, settings={}), BASE, TOKEN)
    texts.append(str(missing.value))
    assert texts and all(TOKEN not in text and "stored-token" not in text and "access_token=" not in text
                         for text in texts)


# --- Test Connection ----------------------------------------------------------------------------


def test_test_request_validates_one_fresh_event() -> None:
    before = int(time.time())
    request = snapchat.test_request(INTEGRATION, BASE, TOKEN)
    assert request.method == "POST"
    assert request.url == f"https://snap.example.test/v3/{APP}/events/validate?access_token=snap-secret-token"
    [event] = request.json["data"]
    assert set(request.json) == {"data"}
    assert before <= event["event_time"] <= int(time.time())
    assert event["action_source"] == "MOBILE_APP" and event["event_name"] == event["event_name"].upper()
    assert event["event_id"] and event["user_data"]
    assert len(event["app_data"]["extinfo"]) == 16 and event["app_data"]["extinfo"][1] == "com.acme.app"
    assert snapchat.test_request(INTEGRATION, BASE, None).url.endswith("?access_token=stored-token")


def test_test_result() -> None:
    assert snapchat.test_result(response(200, snap("VALID"))) == ConnectionCheck(
        True, "Snapchat validated a test event with this token and app id (nothing recorded)")
    invalid = snapchat.test_result(response(200, snap("INVALID", "event_name: unknown")))
    assert not invalid.ok and "event_name: unknown" in invalid.detail
    refused = snapchat.test_result(response(401, snap("FAILED", "Invalid access token")))
    assert not refused.ok and "refused the access token" in refused.detail and "Invalid access token" in refused.detail
    assert snapchat.test_result(response(502, b"<html>")) == ConnectionCheck(
        False, "Snapchat answered HTTP 502 without its JSON answer")
    assert not snapchat.test_result(response(200, {"unexpected": True})).ok
