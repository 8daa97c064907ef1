"""services.gateway.revenuecat: webhook envelope checks and the events.raw record of each event type."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.gateway.revenuecat import identity_candidates, raw_event, webhook_event
from services.privacy.user_data import normalise_phone, sha256_hex
from shared.avro import codec
from shared.errors import InputError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "revenuecat"
NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
EMAIL = "firstlast@gmail.com"
PHONE = "+19795551234"


def _sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []


def _webhook_body(data: Any) -> Any:
    """The webhook body in a sample: as is, or unwrapped from a test-case file that embeds the request
    (e.g. rudder-transformer's {"input": {"request": {"body": "<json string>"}}})."""
    if isinstance(data, dict) and "event" not in data and isinstance(data.get("input"), dict):
        body = data["input"].get("request", {}).get("body", data["input"])
        return json.loads(body) if isinstance(body, str) else body
    return data


def base_event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt-1",
        "type": "INITIAL_PURCHASE",
        "event_timestamp_ms": NOW_MS - 5_000,
        "purchased_at_ms": NOW_MS - 60_000,
        "environment": "PRODUCTION",
        "store": "APP_STORE",
        "period_type": "NORMAL",
        "product_id": "monthly",
        "app_user_id": "user-42",
        "original_app_user_id": "$RCAnonymousID:abc",
        "aliases": ["$RCAnonymousID:abc", "user-42"],
        "price": 8.14,
        "price_in_purchased_currency": 7.99,
        "currency": "EUR",
        "subscriber_attributes": {},
    }
    event.update(fields)
    return {key: value for key, value in event.items() if value is not ...}


def attrs(**values: Any) -> dict[str, Any]:
    return {name: {"value": value, "updated_at_ms": NOW_MS - 100_000} for name, value in values.items()}


def record_of(event: dict[str, Any]) -> dict[str, Any]:
    return raw_event(webhook_event({"api_version": "1.0", "event": event}), app_id="app_1", received_at_ms=NOW_MS)


def props(record: dict[str, Any]) -> dict[str, Any]:
    properties = json.loads(record["properties_json"])
    assert isinstance(properties, dict)
    return properties


def input_error(body: Any) -> InputError:
    with pytest.raises(InputError) as info:
        webhook_event(body)
    return info.value


# --- the samples ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.stem)
def test_every_sample_maps_and_encodes(path: Path) -> None:
    body = _webhook_body(json.loads(path.read_text()))
    event = webhook_event(body)
    record = raw_event(event, app_id="app_1", received_at_ms=NOW_MS)
    encoded = codec().encode("apprefer.RawEvent", record)
    name, decoded = codec().decode(encoded)
    assert name == "apprefer.RawEvent" and decoded == record
    assert record["event_id"] == "rc_" + event["id"] and record["source"] == "revenuecat"
    assert record["referrer"] == {} and record["device"]["device_id"]
    assert props(record)["rc_type"] == event["type"]
    # Whatever personal data a sample carries stays out of the record.
    for attribute in ("$email", "$phoneNumber"):
        value = (event.get("subscriber_attributes") or {}).get(attribute, {}).get("value")
        if value:
            assert value.encode() not in encoded


def test_samples_cover_the_documented_types() -> None:
    types = {webhook_event(_webhook_body(json.loads(p.read_text())))["type"] for p in _sample_files()}
    assert {"INITIAL_PURCHASE", "RENEWAL", "CANCELLATION", "NON_RENEWING_PURCHASE", "EXPIRATION", "TRANSFER",
            "TEST"} <= types


def _sample(name: str) -> dict[str, Any]:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"sample {name} absent")
    event = webhook_event(_webhook_body(json.loads(path.read_text())))
    return raw_event(event, app_id="app_1", received_at_ms=NOW_MS)


def test_sample_refund_and_renewal_in_local_currency() -> None:
    refund = _sample("revenuecat_docs__sample-events_9.json")
    assert (refund["event_name"], refund["revenue_amount"], refund["revenue_currency"]) == ("refund", -9.99, "USD")
    assert props(refund)["cancel_reason"] == "CUSTOMER_SUPPORT"
    renewal = _sample("revenuecat_docs__sample-events_2.json")
    assert (renewal["event_name"], renewal["revenue_amount"], renewal["revenue_currency"]) == ("renewal", 7.99, "EUR")
    assert props(renewal)["trial_conversion"] is False


def test_sample_test_event_is_sandbox_with_hashed_contacts() -> None:
    test = _sample("rudder_transformer__revenuecat_simple_track_call_0.json")
    assert (test["event_name"], test["sandbox"]) == ("rc_test", True)
    assert (test["revenue_amount"], test["revenue_currency"]) == (None, None)  # price and currency null
    assert test["user_hashes"]["em"] == sha256_hex("tuxedo@revenuecat.com")
    assert test["user_hashes"]["ph"] == sha256_hex("19795551234")
    assert test["user_hashes"]["external_id"] == sha256_hex("f8e14f51-0c76-49ba-8d67-c229f1875dd9")


def test_sample_transfer_has_no_user_and_an_implausible_time() -> None:
    transfer = _sample("revenuecat_docs__sample-events_8.json")
    assert transfer["event_name"] == "rc_transfer"
    assert transfer["device"]["device_id"] == "rc_user:unknown"
    # The docs sample's event_timestamp_ms is in the year 4466: the receipt time is used instead.
    assert transfer["event_time_ms"] == NOW_MS
    properties = props(transfer)
    assert properties["rc_event_timestamp_ms"] == 78789789798798
    assert properties["transferred_to"] == ["4BEDB450-8EF2-11E9-B475-0800200C9A66"]
    assert transfer["user_hashes"] == {}


# --- event names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "name"), [
    ({"type": "INITIAL_PURCHASE", "period_type": "TRIAL", "price": 0, "price_in_purchased_currency": 0},
     "trial_start"),
    ({"type": "INITIAL_PURCHASE", "period_type": "NORMAL"}, "subscribe"),
    ({"type": "INITIAL_PURCHASE", "period_type": "INTRO"}, "subscribe"),
    ({"type": "RENEWAL", "is_trial_conversion": True}, "renewal"),
    ({"type": "RENEWAL", "is_trial_conversion": False}, "renewal"),
    ({"type": "NON_RENEWING_PURCHASE", "period_type": "NORMAL"}, "purchase"),
    ({"type": "CANCELLATION", "price": -8.14, "price_in_purchased_currency": -7.99,
      "cancel_reason": "CUSTOMER_SUPPORT"}, "refund"),
    ({"type": "CANCELLATION", "price": 0.0, "cancel_reason": "UNSUBSCRIBE"}, "rc_cancellation"),
    ({"type": "CANCELLATION", "price": None, "price_in_purchased_currency": None}, "rc_cancellation"),
    ({"type": "UNCANCELLATION"}, "rc_uncancellation"),
    ({"type": "EXPIRATION", "expiration_reason": "UNSUBSCRIBE"}, "rc_expiration"),
    ({"type": "BILLING_ISSUE"}, "rc_billing_issue"),
    ({"type": "PRODUCT_CHANGE", "new_product_id": "yearly"}, "rc_product_change"),
    ({"type": "TRANSFER", "app_user_id": ..., "original_app_user_id": ..., "aliases": ...,
      "transferred_from": ["a"], "transferred_to": ["b"]}, "rc_transfer"),
    ({"type": "TEST"}, "rc_test"),
    ({"type": "SOME_FUTURE_TYPE", "brand_new_field": {"nested": [1, 2]}}, "rc_some_future_type"),
])
def test_event_name_per_type(fields: dict[str, Any], name: str) -> None:
    record = record_of(base_event(**fields))
    assert record["event_name"] == name
    assert props(record)["rc_type"] == fields["type"]
    codec().encode("apprefer.RawEvent", record)


def test_trial_conversion_flag() -> None:
    converted = props(record_of(base_event(type="RENEWAL", is_trial_conversion=True)))
    assert converted["trial_conversion"] is True and converted["is_trial_conversion"] is True
    plain = props(record_of(base_event(type="RENEWAL")))
    assert plain["trial_conversion"] is False
    assert "trial_conversion" not in props(record_of(base_event(type="INITIAL_PURCHASE")))


def test_refund_keeps_the_negative_amount() -> None:
    record = record_of(base_event(type="CANCELLATION", price=-8.14, price_in_purchased_currency=-7.99))
    assert (record["revenue_amount"], record["revenue_currency"]) == (-7.99, "EUR")


def test_event_id_is_prefixed_and_stable_across_retries() -> None:
    first = record_of(base_event(id=" 1B2A-retry "))
    again = raw_event(webhook_event({"event": base_event(id=" 1B2A-retry ")}), app_id="app_1",
                      received_at_ms=NOW_MS + 600_000)
    assert first["event_id"] == again["event_id"] == "rc_1B2A-retry"


# --- revenue ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "revenue"), [
    ({}, (7.99, "EUR")),  # what the user paid, in their currency
    ({"currency": "eur"}, (7.99, "EUR")),
    ({"currency": None}, (8.14, "USD")),
    ({"currency": ...}, (8.14, "USD")),
    ({"price_in_purchased_currency": None}, (8.14, "USD")),
    ({"currency": "euros"}, (8.14, "USD")),  # not an ISO 4217 code
    ({"price": 0, "price_in_purchased_currency": 0}, (0.0, "EUR")),
    ({"price": 3, "price_in_purchased_currency": ..., "currency": ...}, (3.0, "USD")),
    ({"price": None, "price_in_purchased_currency": None}, (None, None)),
    ({"price": ..., "price_in_purchased_currency": ..., "currency": ...}, (None, None)),
    ({"price": ..., "price_in_purchased_currency": 9.0, "currency": "USD"}, (9.0, "USD")),  # INVOICE_ISSUANCE
])
def test_revenue_currency_choice(fields: dict[str, Any], revenue: tuple[float | None, str | None]) -> None:
    record = record_of(base_event(**fields))
    assert (record["revenue_amount"], record["revenue_currency"]) == revenue
    codec().encode("apprefer.RawEvent", record)


# --- sandbox ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "sandbox"), [
    ({"environment": "PRODUCTION"}, False),
    ({"environment": "SANDBOX"}, True),
    ({"environment": "sandbox"}, True),
    ({"environment": ...}, False),  # some types have no environment
    ({"environment": ..., "purchase_environment": "SANDBOX"}, True),  # VIRTUAL_CURRENCY_TRANSACTION
    ({"type": "TEST", "environment": "PRODUCTION"}, True),
    ({"type": "RENEWAL", "environment": "SANDBOX"}, True),
])
def test_sandbox(fields: dict[str, Any], sandbox: bool) -> None:
    assert record_of(base_event(**fields))["sandbox"] is sandbox


# --- personal data ----------------------------------------------------------------------------------


def test_email_and_phone_are_hashed_never_raw() -> None:
    event = base_event(subscriber_attributes=attrs(**{"$email": " FirstLast@Gmail.com ", "$phoneNumber": PHONE,
                                                      "$displayName": "Mister Mistoffelees"}))
    record = record_of(event)
    encoded = codec().encode("apprefer.RawEvent", record)
    for raw in (b"FirstLast@Gmail.com", EMAIL.encode(), PHONE.encode(), b"19795551234", b"Mistoffelees"):
        assert raw not in encoded
    hashes = record["user_hashes"]
    assert hashes["em"] == sha256_hex(EMAIL)
    assert hashes["ph"] == sha256_hex(normalise_phone(PHONE)) and hashes["ph_e164"] == sha256_hex(PHONE)
    assert hashes["external_id"] == sha256_hex("user-42")


@pytest.mark.parametrize("bad_email", ["not-an-email", "a b@c.d", 12345, ["x@y.z"], {"x": 1}])
def test_malformed_email_is_dropped_not_fatal(bad_email: Any) -> None:
    record = record_of(base_event(subscriber_attributes=attrs(**{"$email": bad_email, "$phoneNumber": PHONE})))
    assert "em" not in record["user_hashes"]
    assert record["user_hashes"]["ph"] == sha256_hex("19795551234")
    assert "external_id" in record["user_hashes"]
    if isinstance(bad_email, str):
        assert bad_email.encode() not in codec().encode("apprefer.RawEvent", record)


def test_malformed_phone_is_dropped_not_fatal() -> None:
    record = record_of(base_event(subscriber_attributes=attrs(**{"$email": EMAIL, "$phoneNumber": "12"})))
    assert set(record["user_hashes"]) == {"em", "external_id"}


def test_malformed_attributes_are_ignored() -> None:
    attributes: dict[str, Any] = {"$idfa": "not-an-object", "$idfv": {"updated_at_ms": 1}, "$gpsAdId": {"value": 7},
                                  "$ip": {"value": "  "}, "custom": None}
    record = record_of(base_event(subscriber_attributes=attributes))
    device = record["device"]
    assert (device["idfa"], device["gaid"], device["ip"]) == (None, None, None)
    assert device["device_id"] == "rc_user:$RCAnonymousID:abc"


def test_email_as_app_user_id_is_not_leaked() -> None:
    record = record_of(base_event(app_user_id="Someone@Example.com", original_app_user_id=...,
                                  aliases=["someone@example.com", "+1 979 555 1234"]))
    encoded = codec().encode("apprefer.RawEvent", record)
    assert b"omeone@" not in encoded and b"979 555" not in encoded
    email_hash = "sha256:" + sha256_hex("someone@example.com")
    assert record["device"]["device_id"] == "rc_user:" + email_hash
    identities = props(record)["rc_identities"]
    assert identities["app_user_id"] == email_hash
    assert identities["aliases"] == [email_hash, "sha256:" + sha256_hex("19795551234")]
    assert record["user_hashes"]["external_id"] == sha256_hex("Someone@Example.com")  # verbatim, like the SDK


def test_other_attributes_named_like_personal_data_become_user_hashes() -> None:
    record = record_of(base_event(subscriber_attributes=attrs(**{
        "user_email": "Other@Example.com", "phoneNumber": "+44 20 7946 0958", "firstName": "Ann", "dob": "1990-02-03",
        "favorite": "pizza"})))
    hashes = record["user_hashes"]
    assert hashes["em"] == sha256_hex("other@example.com") and hashes["ph"] == sha256_hex("442079460958")
    assert (hashes["fn"], hashes["db"]) == (sha256_hex("ann"), sha256_hex("19900203"))
    assert b"Other@" not in codec().encode("apprefer.RawEvent", record)


def test_reserved_attributes_win_over_custom_ones() -> None:
    record = record_of(base_event(subscriber_attributes=attrs(**{
        "email": "custom@example.com", "$email": EMAIL, "mobile": "+44 20 7946 0958", "$phoneNumber": PHONE})))
    hashes = record["user_hashes"]
    assert hashes["em"] == sha256_hex(EMAIL)
    assert (hashes["ph"], hashes["ph_e164"]) == (sha256_hex("19795551234"), sha256_hex(PHONE))


@pytest.mark.parametrize("attribute", ["$apprefer_device_id", "$idfv", "$idfa", "$gpsAdId", "$ip"])
def test_device_attributes_that_look_personal_are_dropped_not_fatal(attribute: str) -> None:
    record = record_of(base_event(subscriber_attributes=attrs(**{**ALL_IDS, attribute: "buyer@example.com"})))
    encoded = codec().encode("apprefer.RawEvent", record)
    assert b"buyer@" not in encoded
    assert record["device"]["device_id"] != "buyer@example.com"


def test_copied_text_fields_that_look_personal_are_dropped() -> None:
    record = record_of(base_event(presented_offering_id="offer for buyer@example.com", cancel_reason="+1 650 555 0100",
                                  entitlement_ids=["pro", "buyer@example.com"]))
    properties = props(record)
    assert "presented_offering_id" not in properties and "cancel_reason" not in properties
    assert properties["entitlement_ids"] == ["pro"] and properties["product_id"] == "monthly"


def test_an_app_user_id_holding_an_email_is_hashed() -> None:
    record = record_of(base_event(app_user_id="user:Buyer@Example.com", original_app_user_id=..., aliases=[]))
    assert record["device"]["device_id"] == "rc_user:sha256:" + sha256_hex("user:buyer@example.com")
    assert b"Buyer@" not in codec().encode("apprefer.RawEvent", record)


def test_an_event_id_that_looks_personal_is_refused() -> None:
    assert input_error({"event": base_event(id="buyer@example.com")}).field == "event.id"
    assert input_error({"event": base_event(type="+1 650 555 0100")}).field == "event.type"


# --- device -----------------------------------------------------------------------------------------


ALL_IDS = {"$apprefer_device_id": "sdk-dev-1", "$idfv": "IDFV-1", "$idfa": "IDFA-1", "$gpsAdId": "GAID-1",
           "$ip": "203.0.113.9"}


@pytest.mark.parametrize(("drop", "fields", "device_id"), [
    ((), {}, "sdk-dev-1"),
    (("$apprefer_device_id",), {}, "IDFV-1"),
    (("$apprefer_device_id", "$idfv"), {}, "rc_user:$RCAnonymousID:abc"),
    (("$apprefer_device_id", "$idfv"), {"original_app_user_id": None}, "rc_user:user-42"),
    (("$apprefer_device_id", "$idfv"), {"original_app_user_id": ..., "app_user_id": ""}, "rc_user:$RCAnonymousID:abc"),
    (("$apprefer_device_id", "$idfv"), {"original_app_user_id": ..., "app_user_id": ..., "aliases": ["al-1"]},
     "rc_user:al-1"),
    (("$apprefer_device_id", "$idfv"), {"original_app_user_id": ..., "app_user_id": ..., "aliases": []},
     "rc_user:unknown"),
])
def test_device_id_priority(drop: tuple[str, ...], fields: dict[str, Any], device_id: str) -> None:
    attributes = attrs(**{k: v for k, v in ALL_IDS.items() if k not in drop})
    record = record_of(base_event(subscriber_attributes=attributes, **fields))
    assert record["device"]["device_id"] == device_id


def test_device_fields_from_attributes_and_store() -> None:
    record = record_of(base_event(subscriber_attributes=attrs(**ALL_IDS)))
    device = record["device"]
    assert (device["idfa"], device["gaid"], device["ip"], device["os"]) == ("IDFA-1", "GAID-1", "203.0.113.9", "ios")
    for store, os_name in [("MAC_APP_STORE", "ios"), ("PLAY_STORE", "android"), ("AMAZON", "android"),
                           ("STRIPE", None), ("RC_BILLING", None), (None, None)]:
        assert record_of(base_event(store=store))["device"]["os"] == os_name


def test_identity_hints_and_candidates() -> None:
    record = record_of(base_event(subscriber_attributes=attrs(**ALL_IDS), aliases=["$RCAnonymousID:abc", "user-42",
                                                                                    "old-dev"]))
    identities = props(record)["rc_identities"]
    assert identities == {
        "app_user_id": "user-42", "original_app_user_id": "$RCAnonymousID:abc",
        "aliases": ["$RCAnonymousID:abc", "user-42", "old-dev"], "apprefer_device_id": "sdk-dev-1",
        "idfv": "IDFV-1", "idfa": "IDFA-1", "gaid": "GAID-1",
    }
    assert identity_candidates(record) == ["sdk-dev-1", "IDFV-1", "user-42", "$RCAnonymousID:abc", "old-dev"]


def test_identity_candidates_only_present_values() -> None:
    record = record_of(base_event(app_user_id="dev-77", original_app_user_id=..., aliases=...))
    assert props(record)["rc_identities"] == {"app_user_id": "dev-77"}
    assert identity_candidates(record) == ["dev-77"]
    transfer = record_of(base_event(type="TRANSFER", app_user_id=..., original_app_user_id=..., aliases=...))
    assert props(transfer)["rc_identities"] == {}
    assert identity_candidates(transfer) == []
    sdk_like = {"device": {"device_id": "sdk-9"}, "properties_json": "{}"}
    assert identity_candidates(sdk_like) == ["sdk-9"]


# --- time -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, NOW_MS - 5_000),
    ({"event_timestamp_ms": ...}, NOW_MS - 60_000),
    ({"event_timestamp_ms": None}, NOW_MS - 60_000),
    ({"event_timestamp_ms": ..., "purchased_at_ms": ...}, NOW_MS),
    ({"event_timestamp_ms": 5}, NOW_MS - 60_000),  # before 2010: not a real time
])
def test_event_time_fallbacks(fields: dict[str, Any], expected: int) -> None:
    assert record_of(base_event(**fields))["event_time_ms"] == expected


# --- properties -------------------------------------------------------------------------------------


def test_properties_content() -> None:
    event = base_event(type="CANCELLATION", cancel_reason="UNSUBSCRIBE", transaction_id="t2",
                       original_transaction_id="t1", country_code="DE", presented_offering_id="default",
                       expiration_reason=None, subscriber_attributes=attrs(**{"$email": EMAIL, "favorite": "pizza"}))
    properties = props(record_of(event))
    assert {k: properties[k] for k in ("rc_type", "product_id", "store", "environment", "period_type",
                                        "transaction_id", "original_transaction_id", "country_code",
                                        "presented_offering_id", "cancel_reason")} == {
        "rc_type": "CANCELLATION", "product_id": "monthly", "store": "APP_STORE", "environment": "PRODUCTION",
        "period_type": "NORMAL", "transaction_id": "t2", "original_transaction_id": "t1", "country_code": "DE",
        "presented_offering_id": "default", "cancel_reason": "UNSUBSCRIBE",
    }
    assert "expiration_reason" not in properties and "is_trial_conversion" not in properties
    assert "pizza" not in json.dumps(properties) and EMAIL not in json.dumps(properties)


# --- envelope errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"),
    ("event", "body"),
    (None, "body"),
    ({"api_version": "1.0"}, "event"),
    ({"event": None}, "event"),
    ({"event": ["x"]}, "event"),
    ({"event": {"type": "RENEWAL"}}, "event.id"),
    ({"event": {"id": None, "type": "RENEWAL"}}, "event.id"),
    ({"event": {"id": "  ", "type": "RENEWAL"}}, "event.id"),
    ({"event": {"id": 17, "type": "RENEWAL"}}, "event.id"),
    ({"event": {"id": "e1"}}, "event.type"),
    ({"event": {"id": "e1", "type": ""}}, "event.type"),
    ({"event": {"id": "e1", "type": 3}}, "event.type"),
    ({"event": base_event(event_timestamp_ms="1700000000000")}, "event.event_timestamp_ms"),
    ({"event": base_event(event_timestamp_ms=1.7e12)}, "event.event_timestamp_ms"),
    ({"event": base_event(event_timestamp_ms=True)}, "event.event_timestamp_ms"),
    ({"event": base_event(purchased_at_ms="yesterday")}, "event.purchased_at_ms"),
    ({"event": base_event(price="9.99")}, "event.price"),
    ({"event": base_event(price_in_purchased_currency=True)}, "event.price_in_purchased_currency"),
    ({"event": base_event(currency=978)}, "event.currency"),
    ({"event": base_event(app_user_id=42)}, "event.app_user_id"),
    ({"event": base_event(environment=["SANDBOX"])}, "event.environment"),
    ({"event": base_event(aliases="user-42")}, "event.aliases"),
    ({"event": base_event(aliases=["ok", 7])}, "event.aliases[1]"),
    ({"event": base_event(subscriber_attributes=[])}, "event.subscriber_attributes"),
    ({"event": base_event(is_trial_conversion="yes")}, "event.is_trial_conversion"),
])
def test_broken_envelopes_name_the_field(body: Any, field: str) -> None:
    assert input_error(body).field == field


def test_lenient_about_the_rest() -> None:
    body = {"api_version": "2.0", "extra": True,
            "event": base_event(experiments=[{"x": 1}], entitlement_ids=None, commission_percentage="n/a",
                                takehome_percentage=None, metadata={"a": [1]}, renewal_number="3")}
    record = raw_event(webhook_event(body), app_id="app_1", received_at_ms=NOW_MS)
    codec().encode("apprefer.RawEvent", record)


def test_does_not_mutate_the_input() -> None:
    event = base_event(subscriber_attributes=attrs(**ALL_IDS, **{"$email": EMAIL}))
    before = copy.deepcopy(event)
    record_of(event)
    assert event == before


def test_properties_json_is_an_object() -> None:
    assert isinstance(orjson.loads(record_of(base_event())["properties_json"]), dict)
