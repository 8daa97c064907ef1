"""services.forwarders.tiktok: the Events API 2.0 payload and TikTok's answers (errors arrive as HTTP 200)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from typing import Any

import orjson
import pytest

from services.forwarders import tiktok
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

BASE = "https://tiktok.example.test/"
TOKEN = "tt-secret-token"
EVENT_MS = 1_760_000_123_456
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
GAID = "38400000-8CF0-11BD-B23E-10B96E40000D"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = {"em": _sha("jane@example.com"), "ph": _sha("16505551212"), "ph_e164": _sha("+16505551212"),
          "fn": _sha("jane"), "external_id": _sha("user-42")}
INTEGRATION = Integration(app_id="app1", network="tiktok",
                          settings={"tiktok_app_id": "7123456789012345678", "store_app_id": "1234567890"},
                          credentials={"access_token": "stored-token"})
IOS = Device(device_id="idfv-1", idfa=IDFA, ip="203.0.113.7", user_agent="Acme/1.2 (iPhone; iOS 17.4)", os="ios",
             os_version="17.4", model="iPhone15,2", locale="en_US", att_status="authorized", app_version="1.2.0")


def make_job(**changes: Any) -> ForwardJob:
    job = ForwardJob(job_id="j1", app_id="app1", network="tiktok", event_id="evt-1", event_name="purchase",
                     network_event_name="Purchase", event_time_ms=EVENT_MS, device=IOS, click_id_type="ttclid",
                     click_id="E.C.P.CvQBAbC-dEf_123", click_time_ms=EVENT_MS - 60_000, user_hashes=HASHES,
                     revenue_amount=4.99, revenue_currency="eur", properties_json='{"phone": "+16505551212"}')
    return dataclasses.replace(job, **changes)


def first_event(job: ForwardJob, integration: Integration = INTEGRATION) -> dict[str, Any]:
    event: dict[str, Any] = tiktok.build_request([job], integration, BASE, TOKEN).json["data"][0]
    return event


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, body if isinstance(body, bytes) else orjson.dumps(body), headers or {})


def tiktok_answer(code: int, message: str = "OK") -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "2025100908552301", "data": {}}


# --- the request --------------------------------------------------------------------------------


def test_request_shape_field_by_field() -> None:
    request = tiktok.build_request([make_job()], INTEGRATION, BASE, TOKEN)

    assert request.method == "POST"
    assert request.url == "https://tiktok.example.test/open_api/v1.3/event/track/"
    assert request.headers == {"Access-Token": TOKEN}
    assert request.json == {
        "event_source": "app",
        "event_source_id": "7123456789012345678",
        "data": [{
            "event": "Purchase",
            "event_time": EVENT_MS // 1000,
            "event_id": "evt-1",
            "user": {
                "ttclid": "E.C.P.CvQBAbC-dEf_123",
                "email": [HASHES["em"]],
                "phone": [HASHES["ph_e164"]],
                "external_id": [HASHES["external_id"]],
                "idfa": _sha(IDFA.lower()),
                "att_status": "AUTHORIZED",
                "ip": "203.0.113.7",
                "user_agent": "Acme/1.2 (iPhone; iOS 17.4)",
                "locale": "en_US",
            },
            "properties": {"order_id": "evt-1", "value": 4.99, "currency": "EUR"},
            "app": {"app_id": "1234567890", "app_version": "1.2.0"},
        }],
    }


def test_advertising_ids_are_sha256_of_the_lowercased_id() -> None:
    user = first_event(make_job(device=Device(device_id="d", gaid=GAID, os="android")))["user"]
    assert user["gaid"] == _sha(GAID.lower()) == hashlib.sha256(b"38400000-8cf0-11bd-b23e-10b96e40000d").hexdigest()
    assert "idfa" not in user and GAID not in orjson.dumps(user).decode()


def test_the_zero_advertising_id_is_not_sent() -> None:
    user = first_event(make_job(device=Device(device_id="d", idfa="00000000-0000-0000-0000-000000000000")))["user"]
    assert "idfa" not in user


def test_phone_is_the_e164_hash_and_hashes_pass_through_unchanged() -> None:
    upper = _sha("other@example.com").upper()
    job = make_job(user_hashes={"em": upper, "ph": HASHES["ph"], "ph_e164": HASHES["ph_e164"], "external_id": "raw-id"})
    user = first_event(job)["user"]
    assert user["email"] == [upper]
    assert user["phone"] == [HASHES["ph_e164"]] and HASHES["ph"] not in orjson.dumps(user).decode()
    assert "external_id" not in user  # not a SHA-256: never leaves apprefer


def test_no_phone_without_the_e164_hash() -> None:
    assert "phone" not in first_event(make_job(user_hashes={"ph": HASHES["ph"]}))["user"]


def test_no_raw_personal_data_and_no_token_in_the_body() -> None:
    request = tiktok.build_request([make_job(user_hashes={**HASHES, "fn": "Jane"})], INTEGRATION, BASE, TOKEN)
    body = orjson.dumps(request.json).decode()
    for secret in (TOKEN, "stored-token", "jane@example.com", "+16505551212", "Jane", IDFA, IDFA.lower()):
        assert secret not in body
    assert request.headers["Access-Token"] == TOKEN


def test_stored_token_is_used_when_none_is_given() -> None:
    assert tiktok.build_request([make_job()], INTEGRATION, BASE, None).headers == {"Access-Token": "stored-token"}


@pytest.mark.parametrize(("att_status", "os_name", "expected"), [
    ("authorized", "ios", "AUTHORIZED"), ("denied", "ios", "DENIED"), ("not_determined", "ios", "NOT_DETERMINED"),
    ("restricted", "ios", "RESTRICTED"), ("AUTHORIZED", "ios", "AUTHORIZED"), (None, "android", "NOT_APPLICABLE"),
    (None, "ios", None), ("weird", "ios", None),
])
def test_att_status(att_status: str | None, os_name: str, expected: str | None) -> None:
    user = first_event(make_job(device=dataclasses.replace(IOS, att_status=att_status, os=os_name)))["user"]
    assert user.get("att_status") == expected


def test_no_ttclid_for_other_click_ids_and_no_revenue_keeps_the_order_id() -> None:
    event = first_event(make_job(click_id_type="fbclid", click_id="IwAR", revenue_amount=None, revenue_currency=None))
    assert "ttclid" not in event["user"]
    assert event["properties"] == {"order_id": "evt-1"}


def test_app_id_falls_back_to_the_tiktok_app_id() -> None:
    integration = dataclasses.replace(INTEGRATION, settings={"tiktok_app_id": "7123456789012345678"})
    assert first_event(make_job(device=Device(device_id="d")), integration)["app"] == {"app_id": "7123456789012345678"}


@pytest.mark.parametrize(("settings", "credentials", "missing"), [
    ({}, {"access_token": "t"}, "settings.tiktok_app_id"),
    ({"tiktok_app_id": "7"}, {}, "credentials.access_token"),
])
def test_missing_configuration_is_named(settings: dict[str, str], credentials: dict[str, str], missing: str) -> None:
    integration = Integration(app_id="app1", network="tiktok", settings=settings, credentials=credentials)
    with pytest.raises(ValueError, match=re.escape(missing)):
        tiktok.build_request([make_job()], integration, BASE, None)
    with pytest.raises(ValueError, match=re.escape(missing)):
        tiktok.test_request(integration, BASE, None)


def test_batch_keeps_job_order_and_limits() -> None:
    jobs = [make_job(event_id=f"evt-{i}") for i in range(3)]
    events = tiktok.build_request(jobs, INTEGRATION, BASE, TOKEN).json["data"]
    assert [event["event_id"] for event in events] == ["evt-0", "evt-1", "evt-2"]
    assert tiktok.BATCH_LIMIT == 1000 and tiktok.NETWORK == "tiktok"
    assert tiktok.pre_check(make_job(), EVENT_MS) is None


# --- the answer -----------------------------------------------------------------------------------

CLASSIFICATION = [
    (200, tiktok_answer(0), Delivered),
    (200, tiktok_answer(20001, "Partial Success"), Delivered),
    (200, tiktok_answer(40100, "Too many requests"), RetryLater),
    (200, tiktok_answer(40001, "No permission"), Permanent),
    (200, tiktok_answer(40002, "Invalid parameter: event_time"), Permanent),
    (200, tiktok_answer(40105, "Access token is invalid"), Permanent),
    (200, tiktok_answer(50000, "System error"), RetryLater),
    (200, tiktok_answer(51002, "Service busy"), RetryLater),
    (200, tiktok_answer(40999, "Something new"), Permanent),
    (200, {"code": "0", "message": "OK"}, Delivered),
    (200, b"<html>gateway</html>", RetryLater),
    (200, b'{"code": 0, "mess', RetryLater),
    (200, {"message": "no code"}, RetryLater),
    (500, tiktok_answer(40002), RetryLater),
    (502, b"Bad Gateway", RetryLater),
    (503, b"", RetryLater),
    (429, b"slow down", RetryLater),
    (400, tiktok_answer(40002, "Invalid parameter"), Permanent),
    (400, b"<html>Bad Request</html>", Permanent),
    (404, b"Not Found", Permanent),
]


@pytest.mark.parametrize(("status", "body", "expected"), CLASSIFICATION)
def test_classification_table(status: int, body: Any, expected: type) -> None:
    outcomes = tiktok.classify(answer(status, body), [make_job(event_id="a"), make_job(event_id="b")])
    assert len(outcomes) == 2 and outcomes[0] == outcomes[1] and type(outcomes[0]) is expected


def test_unknown_code_keeps_tiktoks_message() -> None:
    [outcome] = tiktok.classify(answer(200, tiktok_answer(40999, "Something new")), [make_job()])
    assert isinstance(outcome, Permanent) and "Something new" in outcome.reason and outcome.error_code == "40999"


def test_bad_token_says_so() -> None:
    [outcome] = tiktok.classify(answer(200, tiktok_answer(40105, "Access token is invalid")), [make_job()])
    assert isinstance(outcome, Permanent) and "token" in outcome.reason and outcome.error_code == "40105"


def test_partial_success_keeps_the_message_as_detail() -> None:
    [outcome] = tiktok.classify(answer(200, tiktok_answer(20001, "Partial Success: 1 event failed")), [make_job()])
    assert isinstance(outcome, Delivered) and outcome.detail and "1 event failed" in outcome.detail


@pytest.mark.parametrize(("status", "body"), [(429, b"busy"), (200, tiktok_answer(40100, "Too many requests"))])
def test_rate_limit_honours_retry_after(status: int, body: Any) -> None:
    [outcome] = tiktok.classify(answer(status, body, {"retry-after": "15"}), [make_job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds == 15.0


# --- Test Connection ----------------------------------------------------------------------------


def test_test_request_sends_one_test_event() -> None:
    before = int(time.time())
    request = tiktok.test_request(INTEGRATION, BASE, TOKEN)
    body = request.json
    assert request.url == "https://tiktok.example.test/open_api/v1.3/event/track/"
    assert request.headers == {"Access-Token": TOKEN}
    assert body["test_event_code"] == "TEST_CONNECTION"
    assert (body["event_source"], body["event_source_id"]) == ("app", "7123456789012345678")
    [event] = body["data"]
    assert event["event_id"] == tiktok.TEST_EVENT_ID and before <= event["event_time"] <= int(time.time())
    assert TOKEN not in orjson.dumps(body).decode()


def test_test_request_uses_the_configured_test_event_code() -> None:
    integration = dataclasses.replace(INTEGRATION, settings={**INTEGRATION.settings, "test_event_code": "TEST12345"})
    assert tiktok.test_request(integration, BASE, TOKEN).json["test_event_code"] == "TEST12345"


def test_test_result() -> None:
    assert tiktok.test_result(answer(200, tiktok_answer(0))).ok
    assert tiktok.test_result(answer(200, tiktok_answer(40105, "Access token is invalid"))) == ConnectionCheck(
        False, "TikTok code 40105: Access token is invalid (request_id 2025100908552301)")
    assert not tiktok.test_result(answer(502, b"<html>")).ok
