"""services.gateway.event_input: SDK event validation, error field names and the events.raw record."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.domain.revenue import DEFAULT_MAX_REVENUE_AMOUNT
from services.gateway.event_input import parse_event_time, parse_events, raw_event_record
from shared.avro import codec
from shared.errors import InputError
from shared.web import MAX_JSON_DEPTH, check_json_depth

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
DAY_MS = 24 * 3600 * 1000


def event(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": "ev-1", "event_name": "purchase", "event_time": NOW_MS // 1000,
                            "device": {"device_id": "dev-1"}}
    body.update(fields)
    return body


def record(body: dict[str, Any], *, field: str = "", **kwargs: Any) -> dict[str, Any]:
    events, _ = parse_events(body, 500)
    options: dict[str, Any] = {"app_id": "app_1", "sandbox": False, "received_at_ms": NOW_MS,
                               "request_ip": "203.0.113.7", "request_user_agent": "Req/1.0",
                               "max_revenue_amount": DEFAULT_MAX_REVENUE_AMOUNT}
    options.update(kwargs)
    return raw_event_record(events[0], field=field, **options)


def input_error(call: Any, *args: Any, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return info.value


# --- parse_events: shape and batch -------------------------------------------------------------


def test_single_event_has_no_prefix() -> None:
    events, prefix = parse_events(event(), 500)
    assert prefix == "" and [e["event_id"] for e in events] == ["ev-1"]


def test_batch_keeps_order() -> None:
    events, prefix = parse_events({"events": [event(event_id=f"e{i}") for i in range(3)]}, 500)
    assert prefix == "events" and [e["event_id"] for e in events] == ["e0", "e1", "e2"]


def test_batch_limit() -> None:
    assert len(parse_events({"events": [event()] * 5}, 5)[0]) == 5
    err = input_error(parse_events, {"events": [event()] * 6}, 5)
    assert err.field == "events" and "5" in err.message


@pytest.mark.parametrize(("body", "field"), [
    ({"events": []}, "events"),
    ({"events": {"event_id": "x"}}, "events"),
    ({"events": [event()], "extra": 1}, "extra"),
    ({"events": [event(), 7]}, "events[1]"),
    ([event()], "body"),
    ("text", "body"),
    (None, "body"),
    (42, "body"),
])
def test_bad_bodies(body: Any, field: str) -> None:
    assert input_error(parse_events, body, 500).field == field


@pytest.mark.parametrize(("body", "field"), [
    ({"events": [event(), event(), event(device={"idfa": "x"})]}, "events[2].device.device_id"),
    ({"events": [event(), event(event_time=None)]}, "events[1].event_time"),
    (event(device={"device_id": "d", "imei": "1"}), "device.imei"),
    (event(referrer={"install_referrer": "x", "msclkid": "1"}), "referrer.msclkid"),
    (event(revenue={"amount": 1, "currency": "USD", "tax": 0.1}), "revenue.tax"),
    (event(revenue={"amount": 1, "currency": "US"}), "revenue.currency"),
    (event(revenue={"currency": "USD"}), "revenue.amount"),
    (event(event_time=[1]), "event_time"),
    (event(event_time={"s": 1}), "event_time"),
    (event(event_time=True), "event_time"),
    (event(event_id=""), "event_id"),
    (event(event_id=5), "event_id"),
    (event(event_name="x" * 101), "event_name"),
    (event(device={"device_id": "d", "os": "windows"}), "device.os"),
    ({"event_id": "a", "event_name": "x", "event_time": 1}, "device"),
    (event(user=["a@b.co"]), "user"),
    (event(properties=[1]), "properties"),
])
def test_validation_errors_name_the_field(body: Any, field: str) -> None:
    err = input_error(parse_events, body, 500)
    assert err.field == field
    assert err.as_json() == {"error": "invalid_request", "field": field, "message": err.message}


def test_record_errors_carry_the_event_prefix() -> None:
    assert input_error(record, event(user={"nickname": "x"})).field == "user.nickname"
    assert input_error(record, event(user={"nickname": "x"}), field="events[2]").field == "events[2].user.nickname"
    assert input_error(record, event(event_time="soon"), field="events[0]").field == "events[0].event_time"
    assert input_error(record, event(user={"email": "not-an-email"})).field == "user.email"


def test_unknown_top_level_fields_go_to_properties() -> None:
    rec = record(event(properties={"plan": "pro", "n": 2}, screen="paywall", ab={"v": 2}))
    assert json.loads(rec["properties_json"]) == {"plan": "pro", "n": 2, "screen": "paywall", "ab": {"v": 2}}
    assert record(event())["properties_json"] == "{}"


# --- nesting depth -----------------------------------------------------------------------------

TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"


def nested(levels: int) -> Any:
    """Arrays and objects `levels` deep, alternating."""
    value: Any = 1
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


def json_depth(value: Any) -> int:
    """Written independently of check_json_depth: recursive, the depth limit keeps it shallow."""
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


PLACES = {
    "properties": lambda value: event(properties={"sku": "x", "deep": value}),
    "user": lambda value: event(user={"email": value}),
    "extra field": lambda value: event(screen=value),
    "extra field, batch": lambda value: {"events": [event(), event(screen=value)]},
    "properties, batch": lambda value: {"events": [event(properties={"deep": value})]},
    "user, batch": lambda value: {"events": [event(), event(), event(user={"a": "b", "c": value})]},
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_free_form_parts_are_refused_past_the_depth_limit(place: str) -> None:
    checked = set()
    for levels in range(MAX_JSON_DEPTH - 6, MAX_JSON_DEPTH + 1):
        body = PLACES[place](nested(levels))
        checked.add(json_depth(body))
        if json_depth(body) <= MAX_JSON_DEPTH:
            assert parse_events(body, 500)
        else:
            err = input_error(parse_events, body, 500)
            assert (err.field, err.message) == ("body", TOO_DEEP)
    assert {MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1} <= checked


@pytest.mark.parametrize("body", [
    event(device={"device_id": nested(70)}),
    event(event_time=nested(65)),
    event(revenue={"amount": nested(65), "currency": "USD"}),
    event(referrer=nested(65)),
    {"events": [event(), nested(65)]},
    {"events": [event(device={"device_id": "d", "idfa": nested(65)})]},
    {"events": [event(), event(properties={"d": nested(70)})], "extra": 1},  # also an unexpected field
    {"events": [event(properties={"d": nested(70)})] * 6},  # also too many events
    {"events": {"one": nested(70)}},
    [nested(70)],
    nested(1000),
])
def test_a_body_too_deep_is_refused_for_its_depth_whatever_else_is_wrong(body: Any) -> None:
    err = input_error(parse_events, body, 5)
    assert (err.field, err.message) == ("body", TOO_DEEP)


def test_check_json_depth() -> None:
    for value in (nested(MAX_JSON_DEPTH), [1, [2, {"a": []}]], {}, "text", None, 5):
        check_json_depth(value)
    for value in (nested(MAX_JSON_DEPTH + 1), [[], nested(MAX_JSON_DEPTH)], {"a": 1, "b": {"c": nested(63)}}):
        err = input_error(check_json_depth, value)
        assert (err.field, err.message) == ("body", TOO_DEEP)
    assert input_error(check_json_depth, nested(4), 3).message == "JSON nested deeper than 3 levels"


def test_extra_fields_keep_their_order_in_properties() -> None:
    rec = record(event(zeta=1, properties={"b": 2, "zeta": 0}, alpha={"x": [1]}))
    assert rec["properties_json"] == '{"b":2,"zeta":1,"alpha":{"x":[1]}}'


def test_a_part_that_is_not_an_object_is_named_as_before() -> None:
    for part, model in (("device", "DeviceIn"), ("referrer", "ReferrerIn"), ("revenue", "RevenueIn")):
        err = input_error(parse_events, event(**{part: "x"}), 500)
        assert (err.field, err.message) == (part, f"Input should be a valid dictionary or instance of {model}")
    err = input_error(parse_events, {"events": [event(), 7]}, 500)
    assert (err.field, err.message) == ("events[1]", "Input should be a valid dictionary or instance of EventIn")
    assert input_error(parse_events, event(user="x"), 500).message == "Input should be a valid dictionary"


# --- event_time --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2023-11-14T22:13:20Z", NOW_MS),
    ("2023-11-14T22:13:20.123Z", NOW_MS + 123),
    ("2023-11-14t22:13:20z", NOW_MS),
    ("2023-11-14T23:13:20+01:00", NOW_MS),
    ("2023-11-14T17:13:20.5-05:00", NOW_MS + 500),
    (1_700_000_000, NOW_MS),
    (1_700_000_000.25, NOW_MS + 250),
    (NOW_MS, NOW_MS),
    (float(NOW_MS - 1), NOW_MS - 1),
    ("1700000000", NOW_MS),
    (" 1700000000123 ", NOW_MS + 123),
    ("1700000000.5", NOW_MS + 500),
    (1_262_304_000, 1_262_304_000_000),  # 2010-01-01 exactly
    ((NOW_MS + DAY_MS) / 1000, NOW_MS + DAY_MS),
])
def test_event_time_accepted(value: Any, expected: int) -> None:
    assert parse_event_time(value, NOW_MS) == expected


@pytest.mark.parametrize("value", [
    "2023-11-14T22:13:20",  # naive
    "2023-11-14",
    "yesterday",
    "",
    True,
    False,
    -1,
    "-1700000000",
    0,
    1_262_303_999,  # 2009-12-31T23:59:59Z
    1_262_303_999_999,
    "2009-12-31T23:59:59Z",
    NOW_MS + DAY_MS + 1,
    (NOW_MS + DAY_MS) // 1000 + 1,
    "2100-01-01T00:00:00Z",
    float("nan"),
    float("inf"),
    "nan",
    "-inf",
])
def test_event_time_rejected(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_event_time(value, NOW_MS)


def test_event_time_round_trips_through_a_record() -> None:
    iso = datetime.fromtimestamp(NOW_MS / 1000, UTC).isoformat()
    assert record(event(event_time=iso))["event_time_ms"] == NOW_MS
    assert record(event(event_time=str(NOW_MS)))["event_time_ms"] == NOW_MS
    err = input_error(record, event(event_time="2023-11-14T22:13:20"))
    assert err.field == "event_time" and "offset" in err.message


# --- the record --------------------------------------------------------------------------------


def test_request_defaults_and_explicit_device_values() -> None:
    rec = record(event())
    assert rec["device"]["ip"] == "203.0.113.7" and rec["device"]["user_agent"] == "Req/1.0"
    rec = record(event(device={"device_id": "dev-1", "ip": "198.51.100.1", "user_agent": "App/2"}))
    assert rec["device"]["ip"] == "198.51.100.1" and rec["device"]["user_agent"] == "App/2"
    rec = record(event(), request_ip=None, request_user_agent=None)
    assert rec["device"]["ip"] is None and rec["device"]["user_agent"] is None


@pytest.mark.parametrize("sandbox", [True, False])
def test_sandbox_and_stamps_pass_through(sandbox: bool) -> None:
    rec = record(event(), sandbox=sandbox, source="revenuecat", app_id="app_9")
    assert rec["sandbox"] is sandbox
    assert (rec["source"], rec["app_id"], rec["received_at_ms"]) == ("revenuecat", "app_9", NOW_MS)
    assert (rec["event_id"], rec["event_name"]) == ("ev-1", "purchase")


def test_referrer_keeps_only_given_values() -> None:
    rec = record(event(referrer={"gclid": " G-1 ", "fbclid": None, "install_referrer": "utm_source=x"}))
    assert rec["referrer"] == {"gclid": "G-1", "install_referrer": "utm_source=x"}
    assert record(event())["referrer"] == {}


def test_raw_personal_data_never_reaches_the_record() -> None:
    email, phone = "Jane.Doe+promo@Example.com", "+1 (650) 555-1212"
    rec = record(event(user={"email": email, "phone": phone, "first_name": "Zebulon", "external_id": "u-42"}))
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    assert rec["user_hashes"]["em"] == sha("jane.doe+promo@example.com")
    assert rec["user_hashes"]["ph"] == sha("16505551212")
    assert rec["user_hashes"]["ph_e164"] == sha("+16505551212")
    assert rec["user_hashes"]["fn"] == sha("zebulon")
    encoded = codec().encode("apprefer.RawEvent", rec)
    for text in (orjson.dumps(rec), encoded):
        for raw in (email, email.lower(), phone, "16505551212", "6505551212", "Zebulon", "zebulon", "u-42"):
            assert raw.encode() not in text


def test_revenue() -> None:
    rec = record(event(revenue={"amount": 9.99, "currency": " eur "}))
    assert (rec["revenue_amount"], rec["revenue_currency"]) == (9.99, "EUR")
    rec = record(event())
    assert (rec["revenue_amount"], rec["revenue_currency"]) == (None, None)


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_revenue_rejected(amount: float) -> None:
    # JSON cannot carry these, but a Python caller can.
    err = input_error(record, event(revenue={"amount": amount, "currency": "USD"}), field="events[3]")
    assert err.field == "events[3].revenue.amount"


# JSON numbers as the gateway parses them: orjson reads 2**70 as a float.
@pytest.mark.parametrize("amount", [-50, -0.01, 1_000_000.01, 1_000_001, 1e308, orjson.loads(str(2**70))])
@pytest.mark.parametrize(("field", "expected_field"), [("", "revenue.amount"),
                                                       ("events[3]", "events[3].revenue.amount")])
def test_revenue_outside_the_default_bound_is_refused_stating_it(amount: float, field: str,
                                                                  expected_field: str) -> None:
    err = input_error(record, event(revenue={"amount": amount, "currency": "USD"}), field=field)
    assert (err.field, err.message) == (expected_field, "must be between 0 and 1000000")
    assert err.as_json()["field"] == expected_field


@pytest.mark.parametrize("amount", [0, 0.0, -0.0, 0.01, 999_999.99, 1_000_000])
def test_revenue_inside_the_default_bound_is_kept(amount: float) -> None:
    assert record(event(revenue={"amount": amount, "currency": "USD"}))["revenue_amount"] == amount


def test_revenue_bound_is_the_apps() -> None:
    raised = record(event(revenue={"amount": 5_000_000, "currency": "IDR"}), max_revenue_amount=5e6)
    assert raised["revenue_amount"] == 5_000_000
    err = input_error(record, event(revenue={"amount": 5_000_000.5, "currency": "IDR"}), max_revenue_amount=5e6)
    assert (err.field, err.message) == ("revenue.amount", "must be between 0 and 5000000")
    err = input_error(record, event(revenue={"amount": 100, "currency": "USD"}), max_revenue_amount=99.5)
    assert err.message == "must be between 0 and 99.5"
    assert record(event(), max_revenue_amount=99.5)["revenue_amount"] is None  # no revenue, nothing to bound


def test_record_encodes_and_decodes_equal() -> None:
    rec = record(event(
        event_time="2023-11-14T22:13:20.5Z",
        device={"device_id": "dev-1", "idfa": "AEBE52E7-03EE-455A-B3C4-E57283966239", "os": "ios",
                "os_version": "17.1", "model": "iPhone15,2", "locale": "en_US", "att_status": "authorized",
                "app_version": "3.2.1"},
        referrer={"click_id": "ck", "ttclid": "T"},
        user={"email": "a@b.co", "country": "US"},
        revenue={"amount": 4.99, "currency": "usd"},
        properties={"sku": "pro_monthly"},
        level=7,
    ), sandbox=True)
    encoded = codec().encode("apprefer.RawEvent", rec)
    assert codec().decode(encoded) == ("apprefer.RawEvent", rec)
    minimal = record(event())
    assert codec().decode_as("apprefer.RawEvent", codec().encode("apprefer.RawEvent", minimal)) == minimal


# Personal data outside `user` used to be a 400 ("personal data belongs in `user`"): the event was lost, and only
# a few exact names were caught. Now every spelling is recognised and hashed where it is, so nothing raw is kept
# and the hash still serves matching (services/privacy/personal_data.py has the rules' own tests).
SHA = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731


@pytest.mark.parametrize(("extra", "name", "meta_key", "normalised"), [
    ({"email": "jane@example.com"}, "email", "em", "jane@example.com"),
    ({"properties": {"phone": "+15551234"}}, "phone", "ph", "15551234"),
])
def test_personal_data_outside_user_is_hashed_in_place_not_rejected(extra: dict[str, Any], name: str,
                                                                   meta_key: str, normalised: str) -> None:
    rec = record(event(**extra))
    assert orjson.loads(rec["properties_json"])[name] == SHA(normalised)
    assert rec["user_hashes"][meta_key] == SHA(normalised)


def test_every_spelling_at_any_depth_is_hashed_and_fills_user_hashes() -> None:
    rec = record(event(
        Email=" Jane.Doe@Example.com ", user_email="second@example.com",
        **{"e-mail": "third@example.com"},
        properties={"profile": {"email": "fourth@example.com", "phoneNumber": "+1 (650) 555-0100",
                                "firstName": "Zoë", "last_name": "O'Brien", "dob": "1990-02-03"},
                    "contacts": [{"mobile": "+44 20 7946 0958"}], "sku": "coins_100"},
    ))
    encoded = codec().encode("apprefer.RawEvent", rec)
    for raw in ("Jane.Doe@Example.com", "jane.doe@example.com", "second@", "third@", "fourth@", "650) 555",
                "16505550100", "7946 0958", "442079460958", "O'Brien", "o'brien", "1990-02-03", "19900203"):
        assert raw.encode() not in encoded, raw
    properties = orjson.loads(rec["properties_json"])
    assert properties["sku"] == "coins_100"
    assert properties["profile"]["phoneNumber"] == SHA("16505550100")
    assert properties["contacts"] == [{"mobile": SHA("442079460958")}]
    # The first of each kind, in the order sent (properties, then the extra fields), fills what `user` left.
    assert rec["user_hashes"] == {"em": SHA("fourth@example.com"), "ph": SHA("16505550100"),
                                  "ph_e164": SHA("+16505550100"), "fn": SHA("zoë"), "ln": SHA("o'brien"),
                                  "db": SHA("19900203")}


def test_user_wins_over_fields_named_like_personal_data() -> None:
    rec = record(event(user={"email": "user@example.com", "phone": "+1 650 555 0100"},
                       properties={"email": "other@example.com", "mobile": "+44 20 7946 0958", "first_name": "Ann"}))
    assert rec["user_hashes"]["em"] == SHA("user@example.com")
    assert (rec["user_hashes"]["ph"], rec["user_hashes"]["ph_e164"]) == (SHA("16505550100"), SHA("+16505550100"))
    assert rec["user_hashes"]["fn"] == SHA("ann")
    pre_hashed_phone = SHA("16505550100")
    rec = record(event(user={"phone": pre_hashed_phone}, properties={"mobile": "+44 20 7946 0958"}))
    assert rec["user_hashes"] == {"ph": pre_hashed_phone}  # no ph_e164 of another phone beside it


def test_personal_looking_values_elsewhere_are_dropped_and_counted() -> None:
    from prometheus_client import REGISTRY

    def dropped(kind: str) -> float:
        return REGISTRY.get_sample_value("apprefer_personal_data_dropped_total",
                                         {"entry": "events", "kind": kind}) or 0.0

    before = dropped("email"), dropped("phone")
    rec = record(event(note="write to jane@example.com", properties={
        "tags": ["vip", "+1 650 555 0100"], "deep_link": "app://x?to=jane%40example.com", "level": 7,
        "jane@example.com": True, "ok": "keep me"}))
    properties = orjson.loads(rec["properties_json"])
    assert properties == {"tags": ["vip"], "level": 7, "ok": "keep me"}
    assert (dropped("email"), dropped("phone")) == (before[0] + 3, before[1] + 1)


@pytest.mark.parametrize(("device", "referrer", "field"), [
    ({"device_id": "jane@example.com"}, None, "device.device_id"),
    ({"device_id": "d", "idfa": "+1 650 555 0100"}, None, "device.idfa"),
    ({"device_id": "d", "gaid": "x:jane@example.com"}, None, "device.gaid"),
    ({"device_id": "d"}, {"fbclid": "jane@example.com"}, "referrer.fbclid"),
    ({"device_id": "d"}, {"click_id": "+16505550100"}, "referrer.click_id"),
])
def test_identifiers_that_look_like_personal_data_are_refused_naming_the_field(
        device: dict[str, str], referrer: dict[str, str] | None, field: str) -> None:
    err = input_error(record, event(device=device, referrer=referrer), field="events[2]")
    assert err.field == f"events[2].{field}" and "looks like" in err.message
    assert input_error(record, event(event_id="jane@example.com")).field == "event_id"
    assert input_error(record, event(event_name="+44 20 7946 0958")).field == "event_name"


def test_device_text_and_install_referrer_lose_only_the_personal_part() -> None:
    rec = record(event(device={"device_id": "d", "model": "Pixel 8", "user_agent": "Bot/1.0 (+mailto:ops@example.com)"},
                       referrer={"install_referrer": "utm_source=google&email=jane%40example.com&gclid=G-1"
                                                     "&note=%2B1%20650%20555%200100"}))
    assert rec["device"]["model"] == "Pixel 8" and rec["device"]["user_agent"] is None
    assert rec["referrer"]["install_referrer"] == f"utm_source=google&email={SHA('jane@example.com')}&gclid=G-1"
    assert rec["user_hashes"] == {"em": SHA("jane@example.com")}
    # A request's own User-Agent header is free text too.
    assert record(event(), request_user_agent="Crawler (call +1 650 555 0100)")["device"]["user_agent"] is None
    plain = "utm_source=google-play&utm_medium=organic"
    assert record(event(referrer={"install_referrer": plain}))["referrer"]["install_referrer"] == plain


def test_revenue_amount_must_be_a_number() -> None:
    assert input_error(parse_events, event(revenue={"amount": "9.99", "currency": "USD"}), 10).field == (
        "revenue.amount")
