"""RevenueCat webhooks into events.raw records. Pure: webhook JSON in, Avro-ready records out.

RevenueCat retries anything but a 200 (5 times over ~2.5 hours) with the same ``event.id``, and adds
types and fields without notice. So only the envelope and the few fields we rely on are checked
(an ``InputError`` naming the field); everything else is taken leniently: unknown types become
``rc_<type>`` events, malformed subscriber attributes or personal data are dropped, implausible
timestamps fall back to the time we received the webhook. A price no store charges (``price`` beyond
±1,000,000 USD, ``price_in_purchased_currency`` beyond ±1e12) is refused naming the field, as the
networks would receive it as revenue.

Mapping (issue 5): INITIAL_PURCHASE -> ``trial_start`` (period_type TRIAL) or ``subscribe``;
RENEWAL -> ``renewal`` (``trial_conversion`` property when ``is_trial_conversion``);
NON_RENEWING_PURCHASE -> ``purchase``; CANCELLATION with a negative price -> ``refund``; any other
type T -> ``rc_<t>`` (``rc_cancellation``, ``rc_test``, ...). SANDBOX and TEST events are sandbox.

Personal data (services/privacy/personal_data.py): ``$email``, ``$phoneNumber`` and any other subscriber
attribute named like personal data (``email``, ``user_phone``, ``firstName``, ...) become user hashes (the
reserved ones first; other attributes are not kept). An app user id or alias that is an email address or a
phone number is kept as its hash. A device attribute (``$apprefer_device_id``, ``$idfv``, ``$idfa``,
``$gpsAdId``, ``$ip``) or a copied text field that looks like one is dropped, counted and logged: a 400
would only make RevenueCat retry, then give up on the purchase. An ``event.id`` or ``event.type`` that looks
like one is a 400.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from services.domain.revenue import DEFAULT_MAX_REVENUE_AMOUNT, MAX_REVENUE_BOUND
from services.gateway.event_input import (
    MAX_FUTURE_MS,
    MIN_EVENT_TIME_MS,
    check_revenue_amount,
)
from services.privacy.personal_data import (
    EMAIL,
    Findings,
    field_kind,
    hash_field,
    identifier_problem,
    report_drops,
    scrub,
    value_kind,
)
from services.privacy.user_data import hash_user_data, normalise_email, normalise_phone, sha256_hex
from shared.errors import InputError

__all__ = [
    "SOURCE",
    "event_name_for",
    "identity_candidates",
    "raw_event",
    "webhook_event",
]

SOURCE = "revenuecat"
EVENT_ID_PREFIX = "rc_"
USER_DEVICE_PREFIX = "rc_user:"
MAX_EVENT_NAME_LEN = 100

_OS_BY_STORE = {"APP_STORE": "ios", "MAC_APP_STORE": "ios", "PLAY_STORE": "android", "AMAZON": "android"}
# Subscriber attribute -> Device field.
_DEVICE_ATTRIBUTES = {"idfa": "$idfa", "gaid": "$gpsAdId", "ip": "$ip"}
# Attributes the record keeps (as device ids and identity hints): dropped when they look like personal data.
_KEPT_ATTRIBUTES = ("$apprefer_device_id", "$idfv", "$idfa", "$gpsAdId", "$ip")
# RevenueCat's own personal attributes, which win over custom ones named like them.
_RESERVED_PERSONAL_ATTRIBUTES = ("$email", "$phoneNumber")
# Copied into properties as they are (strings); personal data never is.
_TEXT_PROPERTIES = (
    "product_id", "new_product_id", "store", "environment", "purchase_environment", "period_type", "transaction_id",
    "original_transaction_id", "country_code", "presented_offering_id", "offer_code", "cancel_reason",
    "expiration_reason",
)
# Fields we rely on and their accepted JSON types (None is always accepted: RevenueCat sends nulls).
_STRING_FIELDS = (
    "app_user_id", "original_app_user_id", "environment", "purchase_environment", "store", "period_type",
    "currency", "product_id", "transaction_id", "original_transaction_id",
)
_TIME_FIELDS = ("event_timestamp_ms", "purchased_at_ms")
# Prices and the bound on their magnitude (refunds are negative). `price` is in USD, so the SDK's default
# bound applies; the local price runs to millions in IDR or VND for an ordinary purchase, so only the
# largest bound an app may set does. (The per-app bound is not looked up for webhooks.)
_PRICE_BOUNDS = {"price": DEFAULT_MAX_REVENUE_AMOUNT, "price_in_purchased_currency": MAX_REVENUE_BOUND}
_STRING_LIST_FIELDS = ("aliases", "transferred_from", "transferred_to")

_CURRENCY = re.compile(r"[A-Za-z]{3}")
_NAME_UNSAFE = re.compile(r"[^a-z0-9_]+")


# --- envelope -----------------------------------------------------------------------------------


def webhook_event(body: Any) -> Mapping[str, Any]:
    """The ``event`` object of a webhook body, after checking the fields the mapping relies on.

    :raises InputError: naming the field (``body``, ``event``, ``event.id``, ``event.type``, ...).
    """
    if not isinstance(body, Mapping):
        raise InputError("body", "must be a JSON object")
    if "event" not in body:
        raise InputError("event", "is required")
    event = body["event"]
    if not isinstance(event, Mapping):
        raise InputError("event", "must be a JSON object")

    event_id = event.get("id")
    if event_id is None:
        raise InputError("event.id", "is required")
    if not isinstance(event_id, str):
        raise InputError("event.id", "must be a string")
    if not event_id.strip():
        raise InputError("event.id", "must not be blank")
    event_type = event.get("type")
    if event_type is None:
        raise InputError("event.type", "is required")
    if not isinstance(event_type, str):
        raise InputError("event.type", "must be a string")
    if not event_type.strip():
        raise InputError("event.type", "must not be blank")
    for name, identifier in (("event.id", event_id), ("event.type", event_type)):  # both name the record
        problem = identifier_problem(identifier)
        if problem is not None:
            raise InputError(name, problem)

    for name in _STRING_FIELDS:
        if event.get(name) is not None and not isinstance(event[name], str):
            raise InputError(f"event.{name}", "must be a string")
    for name in _TIME_FIELDS:
        value = event.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"event.{name}", "must be an integer (epoch milliseconds)")
    for name, bound in _PRICE_BOUNDS.items():
        value = event.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"event.{name}", "must be a finite number")
        check_revenue_amount(value, bound, f"event.{name}", allow_refunds=True)
    for name in _STRING_LIST_FIELDS:
        value = event.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise InputError(f"event.{name}", "must be a list of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise InputError(f"event.{name}[{index}]", "must be a string")
    if event.get("is_trial_conversion") is not None and not isinstance(event["is_trial_conversion"], bool):
        raise InputError("event.is_trial_conversion", "must be a boolean")
    attributes = event.get("subscriber_attributes")
    if attributes is not None and not isinstance(attributes, Mapping):
        raise InputError("event.subscriber_attributes", "must be a JSON object")
    # Individual attributes are set by the app, not by RevenueCat: a malformed one is ignored
    # (see _attribute) rather than failing a purchase webhook that would then be retried and lost.
    return event


# --- mapping --------------------------------------------------------------------------------------


def event_name_for(event: Mapping[str, Any]) -> str:
    """The apprefer event name of a (validated) RevenueCat event."""
    rc_type = _rc_type(event)
    if rc_type == "INITIAL_PURCHASE":
        return "trial_start" if _text(event, "period_type") == "TRIAL" else "subscribe"
    if rc_type == "RENEWAL":
        return "renewal"
    if rc_type == "NON_RENEWING_PURCHASE":
        return "purchase"
    if rc_type == "CANCELLATION" and _is_refund(event):
        return "refund"
    name = _NAME_UNSAFE.sub("_", rc_type.lower()).strip("_") or "unknown"
    return (EVENT_ID_PREFIX + name)[:MAX_EVENT_NAME_LEN]


def raw_event(event: Mapping[str, Any], *, app_id: str, received_at_ms: int) -> dict[str, Any]:
    """The events.raw (apprefer.RawEvent) record of a RevenueCat event returned by `webhook_event`.

    Never raises on a validated event: personal data that cannot be normalised is dropped, and
    an implausible event time is replaced by the next candidate (purchase time, then receipt time).
    """
    rc_type = _rc_type(event)
    event_id = str(event["id"]).strip()
    findings = Findings()
    attributes = _attributes(event)
    for name in _KEPT_ATTRIBUTES:
        shape = value_kind(attributes[name]) if name in attributes else None
        if shape is not None:
            findings.dropped.append((f"event.subscriber_attributes.{name}", shape))
            del attributes[name]
    app_user_id = _text(event, "app_user_id")
    original_app_user_id = _text(event, "original_app_user_id")
    aliases = _dedupe(_text_list(event, "aliases"))

    apprefer_device_id = attributes.get("$apprefer_device_id")
    idfv = attributes.get("$idfv")
    user_id = original_app_user_id or app_user_id or (aliases[0] if aliases else None)
    device_id = apprefer_device_id or idfv or USER_DEVICE_PREFIX + (_redact(user_id) if user_id else "unknown")
    device: dict[str, Any] = {
        "device_id": device_id,
        "idfa": attributes.get("$idfa"),
        "gaid": attributes.get("$gpsAdId"),
        "ip": attributes.get("$ip"),
        "user_agent": None,
        "os": _OS_BY_STORE.get(_text(event, "store") or ""),
        "os_version": None,
        "model": None,
        "locale": None,
        "att_status": None,
        "app_version": None,
    }

    event_time_ms, time_replaced = _event_time(event, received_at_ms)
    amount, currency = _revenue(event)
    properties = scrub(_properties(event, rc_type), "event", findings)
    if time_replaced and isinstance(event.get("event_timestamp_ms"), int):
        properties["rc_event_timestamp_ms"] = event["event_timestamp_ms"]
    identities: dict[str, Any] = {
        "app_user_id": _redact(app_user_id) if app_user_id else None,
        "original_app_user_id": _redact(original_app_user_id) if original_app_user_id else None,
        "aliases": _dedupe([_redact(alias) for alias in aliases]),
        "apprefer_device_id": apprefer_device_id,
        "idfv": idfv,
        "idfa": device["idfa"],
        "gaid": device["gaid"],
    }
    properties["rc_identities"] = {key: value for key, value in identities.items() if value}
    report_drops(SOURCE, findings, app_id=app_id)

    return {
        "event_id": EVENT_ID_PREFIX + event_id,
        "app_id": app_id,
        "event_name": event_name_for(event),
        "event_time_ms": event_time_ms,
        "received_at_ms": received_at_ms,
        "sandbox": _is_sandbox(event),
        "source": SOURCE,
        "device": device,
        "referrer": {},
        # external_id: the exact id, as the SDK hashes user.external_id verbatim.
        "user_hashes": _user_hashes(attributes, event.get("app_user_id")),
        "revenue_amount": amount,
        "revenue_currency": currency,
        "properties_json": orjson.dumps(properties).decode(),
    }


def identity_candidates(record: Mapping[str, Any]) -> list[str]:
    """Device ids to try, best first, for a RevenueCat events.raw record.

    The SDK's device id and the IDFV (subscriber attributes), then app_user_id,
    original_app_user_id and the aliases as raw ids (an app may use the SDK device id as its
    RevenueCat app user id). The record's own ``rc_user:...`` device id is no SDK device id and is
    not included; a record from elsewhere (or without usable hints) yields its device id as is.
    """
    try:
        properties = orjson.loads(record.get("properties_json") or "{}")
    except orjson.JSONDecodeError:
        properties = {}
    hints = properties.get("rc_identities") if isinstance(properties, dict) else None
    candidates: list[str] = []
    if isinstance(hints, Mapping):
        aliases = hints.get("aliases")
        ordered = [hints.get("apprefer_device_id"), hints.get("idfv"), hints.get("app_user_id"),
                   hints.get("original_app_user_id"), *(aliases if isinstance(aliases, list) else [])]
        candidates = _dedupe([value for value in ordered if isinstance(value, str) and value])
    if not candidates:
        device = record.get("device")
        device_id = device.get("device_id") if isinstance(device, Mapping) else None
        if isinstance(device_id, str) and device_id and not device_id.startswith(USER_DEVICE_PREFIX):
            candidates = [device_id]
    return candidates


# --- helpers --------------------------------------------------------------------------------------


def _rc_type(event: Mapping[str, Any]) -> str:
    return str(event["type"]).strip().upper()


def _text(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _text_list(event: Mapping[str, Any], name: str) -> list[str]:
    value = event.get(name)
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


def _number(event: Mapping[str, Any], name: str) -> float | None:
    value = event.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _attributes(event: Mapping[str, Any]) -> dict[str, str]:
    """Subscriber attribute name -> value, for the well-formed ones ({"value": "<non-blank>"})."""
    raw = event.get("subscriber_attributes")
    if not isinstance(raw, Mapping):
        return {}
    values: dict[str, str] = {}
    for name, attribute in raw.items():
        value = attribute.get("value") if isinstance(attribute, Mapping) else None
        if isinstance(value, str) and value.strip():
            values[str(name)] = value.strip()
    return values


def _redact(user_id: str) -> str:
    """An app user id, unless it is (or holds) an email address or a phone number.

    Some apps use the email (or phone) as RevenueCat app user id; raw personal data must not reach
    Kafka, so such an id is replaced by ``sha256:`` + the hash of its normalised form (of the id
    lower-cased when it holds more than an address or a number).
    """
    kind = value_kind(user_id)
    if kind is None:
        return user_id
    try:
        normalised = normalise_email(user_id) if kind == EMAIL else normalise_phone(user_id)
    except ValueError:  # more than an address, or an address the networks would refuse
        normalised = user_id.strip().lower()
    return "sha256:" + sha256_hex(normalised)


def _is_sandbox(event: Mapping[str, Any]) -> bool:
    environments = {(_text(event, name) or "").upper() for name in ("environment", "purchase_environment")}
    return "SANDBOX" in environments or _rc_type(event) == "TEST"


def _is_refund(event: Mapping[str, Any]) -> bool:
    price = _number(event, "price")
    if price is None:
        price = _number(event, "price_in_purchased_currency")
    return price is not None and price < 0


def _revenue(event: Mapping[str, Any]) -> tuple[float | None, str | None]:
    local, currency = _number(event, "price_in_purchased_currency"), _text(event, "currency")
    if local is not None and currency is not None and _CURRENCY.fullmatch(currency):
        return local, currency.upper()
    usd = _number(event, "price")
    if usd is not None:
        return usd, "USD"
    return None, None


def _plausible_time(value: Any, received_at_ms: int) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and MIN_EVENT_TIME_MS <= value <= received_at_ms + MAX_FUTURE_MS)


def _event_time(event: Mapping[str, Any], received_at_ms: int) -> tuple[int, bool]:
    """(event time, whether event_timestamp_ms was unusable). Never rejects: that would lose the event."""
    for index, name in enumerate(_TIME_FIELDS):
        value = event.get(name)
        if isinstance(value, int) and _plausible_time(value, received_at_ms):
            return value, index > 0
    return received_at_ms, True


def _user_hashes(attributes: Mapping[str, str], app_user_id: Any) -> dict[str, str]:
    """Like SDK user data, but a malformed value is dropped instead of failing the webhook: $email and
    $phoneNumber, then the first valid value of each kind among the other attributes named like personal
    data, and the app user id as external_id."""
    findings = Findings()
    reserved = [name for name in _RESERVED_PERSONAL_ATTRIBUTES if name in attributes]
    for name in [*reserved, *(name for name in attributes if name not in _RESERVED_PERSONAL_ATTRIBUTES)]:
        kind = field_kind(name)
        if kind is not None:
            findings.offer(hash_field(kind, attributes[name])[1])
    hashes = findings.user_hashes
    if app_user_id is not None:
        with contextlib.suppress(InputError):
            hashes.update(hash_user_data({"external_id": app_user_id}))
    return hashes


def _properties(event: Mapping[str, Any], rc_type: str) -> dict[str, Any]:
    properties: dict[str, Any] = {"rc_type": rc_type}
    for name in _TEXT_PROPERTIES:
        value = _text(event, name)
        if value is not None:
            properties[name] = value
    usd = _number(event, "price")
    if usd is not None:
        properties["price_usd"] = usd
    entitlements = _text_list(event, "entitlement_ids")
    if entitlements:
        properties["entitlement_ids"] = entitlements
    renewal_number = event.get("renewal_number")
    if isinstance(renewal_number, int) and not isinstance(renewal_number, bool):
        properties["renewal_number"] = renewal_number
    if rc_type == "RENEWAL":
        is_trial_conversion = event.get("is_trial_conversion") is True
        properties["is_trial_conversion"] = is_trial_conversion
        properties["trial_conversion"] = is_trial_conversion
    if rc_type == "TRANSFER":
        for name in ("transferred_from", "transferred_to"):
            properties[name] = _dedupe([_redact(user_id) for user_id in _text_list(event, name)])
    return properties
