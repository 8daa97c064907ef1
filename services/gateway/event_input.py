"""SDK events and server-to-server clicks as accepted by the gateway: validation and shaping.

Pure: request JSON in, Avro-ready records out, or an `InputError` naming the offending field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, cast

import orjson
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    with_config,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12 (a pydantic dependency)

from services.privacy.personal_data import (
    Findings,
    TooDeep,
    identifier_problem,
    report_drops,
    scrub,
    scrub_referrer,
    scrub_text,
    value_kind,
    with_offered_hashes,
)
from services.privacy.user_data import hash_user_data, user_json_schema
from shared.errors import InputError
from shared.networks.registry import registry
from shared.web import MAX_JSON_DEPTH, check_json_depth, nests_deeper

# Far-future and ancient timestamps are client bugs; the networks reject them anyway.
MAX_FUTURE_MS = 24 * 3600 * 1000
MIN_EVENT_TIME_MS = 1_262_304_000_000  # 2010-01-01
DEFAULT_MAX_BATCH = 500  # APPREFER_GATEWAY_MAX_BATCH's default

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
ClickIdValue = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
# Refused (400 naming the field) when they look like an email address or a phone number, with event_id,
# event_name and the referrer's click ids.
DEVICE_IDENTIFIERS = ("device_id", "idfa", "gaid")
# Free text: dropped (null) when it contains something shaped like an email address or a phone number.
DEVICE_TEXT = ("ip", "user_agent", "os_version", "model", "locale", "att_status", "app_version")
TIME_FORMAT_ERROR = "must be RFC 3339 or epoch seconds/milliseconds"


def _time_type(value: Any) -> Any:
    # Checked before the union: otherwise pydantic turns true into 1 and names a bad type's
    # error after a union member ("event_time.constrained-str") instead of the field.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(TIME_FORMAT_ERROR)
    return value


# TypedDicts, not models: pydantic validates them in two thirds of the time and they need no model_dump.
# Optional keys that were not sent are absent from the validated dict.
_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


@with_config(_STRICT)
class DeviceIn(TypedDict):
    """Unknown fields are a 400 naming them (device.imei). device_id, idfa and gaid that look like an email
    address or a phone number are a 400 naming them; the other fields are dropped (null) when they contain one."""

    device_id: Id
    idfa: NotRequired[Text | None]
    gaid: NotRequired[Text | None]
    ip: NotRequired[Text | None]
    user_agent: NotRequired[Text | None]
    os: NotRequired[Literal["ios", "android"] | None]
    os_version: NotRequired[Text | None]
    model: NotRequired[Text | None]
    locale: NotRequired[Text | None]
    att_status: NotRequired[Text | None]
    app_version: NotRequired[Text | None]


# Besides these, a referrer carries network click ids under any registered network's parameter names, in
# any case (`gclid`, Snap's `ScCid`): checked and renamed to their click id type by _referrer_click_ids.
@with_config(ConfigDict(extra="allow", str_strip_whitespace=True))
class ReferrerIn(TypedDict, total=False):
    """The install referrer, and click ids under any registered network's parameter names (fbclid, gclid,
    ttclid, ScCid, ...: any case); any other key is a 400 naming it."""

    install_referrer: Annotated[str, StringConstraints(max_length=4000)] | None
    click_id: ClickIdValue | None


@with_config(_STRICT)
class RevenueIn(TypedDict):
    """amount is a JSON number, not a string; below 0 or above the app's max_revenue_amount is a 400."""

    amount: Annotated[float, Field(strict=True)]  # strict: "9.99" and true are not amounts
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]


# Fields beyond the contract are kept in `properties`, so the top level allows extras.
@with_config(ConfigDict(extra="allow", str_strip_whitespace=True))
class EventIn(TypedDict):
    """One SDK event. Fields beyond these are kept in properties. Personal data belongs under user. Sent
    elsewhere anyway (a field named like it: email, e-mail, userEmail, phone_number, mobile, firstName, dob, ...,
    at the top level, in properties at any depth or in the install referrer) it is kept SHA-256 hashed in place
    (normalised as under user), and fills the user hashes user leaves empty. Any other string that contains an
    email address or a phone number is dropped. event_id, event_name and the referrer's click ids that look like
    one are a 400 naming them."""

    event_id: Id
    event_name: Id
    event_time: Annotated[str | int | float, BeforeValidator(_time_type), Field(
        description="RFC 3339 with an offset, or epoch seconds / milliseconds (told apart by magnitude), as a "
                    "number or a numeric string; between 2010-01-01 and one day ahead of the gateway's clock")]
    device: DeviceIn
    referrer: NotRequired[ReferrerIn | None]
    user: NotRequired[Annotated[dict[str, Any] | None, WithJsonSchema(user_json_schema())]]
    revenue: NotRequired[RevenueIn | None]
    properties: NotRequired[dict[str, Any]]


@with_config(_STRICT)
class EventBatchIn(TypedDict):
    """Up to APPREFER_GATEWAY_MAX_BATCH events (500 by default); one invalid event rejects them all."""

    events: Annotated[list[EventIn], Field(min_length=1, max_length=DEFAULT_MAX_BATCH)]


_EVENTS = TypeAdapter(list[EventIn])
_EVENT_FIELDS = EventIn.__required_keys__ | EventIn.__optional_keys__
_NO_DEVICE_VALUES: dict[str, str | None] = dict.fromkeys(DeviceIn.__annotations__)  # every key, in order
_REFERRER_FIELDS = frozenset(ReferrerIn.__annotations__)
MAX_CLICK_ID_LENGTH = 500


def _field_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_event_time(value: str | int | float, now_ms: int) -> int:
    """RFC 3339, or epoch seconds / milliseconds (told apart by magnitude) -> epoch ms."""
    if isinstance(value, bool):
        raise ValueError(TIME_FORMAT_ERROR)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValueError(TIME_FORMAT_ERROR) from None
            if parsed.tzinfo is None:
                raise ValueError("RFC 3339 time needs an offset (Z or +hh:mm)") from None
            try:
                millis = int(parsed.astimezone(UTC).timestamp() * 1000)
            except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
                raise ValueError("is out of range") from None
        else:
            return parse_event_time(number, now_ms)
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a positive epoch time")
        millis = int(value * 1000) if value < 1e11 else int(value)
    if millis < MIN_EVENT_TIME_MS:
        raise ValueError("is before 2010")
    if millis > now_ms + MAX_FUTURE_MS:
        raise ValueError("is more than a day in the future")
    return millis


def parse_events(body: Any, max_batch: int) -> tuple[list[EventIn], str]:
    """Accepts one event or {"events": [...]} nested at most MAX_JSON_DEPTH levels deep; returns the events and
    the field prefix used. A body too deep is refused naming "body", whatever else is wrong with it."""
    try:
        events, prefix = _validate_events(body, max_batch)
    except InputError:
        check_json_depth(body)
        raise
    # A valid event's typed parts are flat, so only its free-form parts can reach the limit: checking just
    # those costs a fraction of walking the whole body.
    levels_below_event = MAX_JSON_DEPTH - (3 if prefix else 1)  # an event is at level 3 in {"events": [...]}
    for event in events:
        parts: list[Any] = [event.get("user"), event.get("properties")]
        if not event.keys() <= _EVENT_FIELDS:
            parts += [value for name, value in event.items() if name not in _EVENT_FIELDS]
        for part in parts:
            if nests_deeper(part, levels_below_event):
                raise InputError("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return events, prefix


def _validate_events(body: Any, max_batch: int) -> tuple[list[EventIn], str]:
    if isinstance(body, dict) and "events" in body and "event_id" not in body:
        items = body["events"]
        if set(body) != {"events"}:
            extra = sorted(set(body) - {"events"})[0]
            raise InputError(extra, "unexpected field beside events")
        if not isinstance(items, list):
            raise InputError("events", "must be a list")
        if not items:
            raise InputError("events", "must not be empty")
        if len(items) > max_batch:
            raise InputError("events", f"at most {max_batch} events per request")
        prefix = "events"
    elif isinstance(body, dict):
        items, prefix = [body], ""
    else:
        raise InputError("body", "must be a JSON object")
    try:
        events = _EVENTS.validate_python(items)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = tuple(first["loc"])
        message = _model_message(loc, first["type"]) or first["msg"]
        if not prefix:
            loc = loc[1:]  # a single event: no list index in the field name
        raise InputError(_field_path(prefix, loc) or "body", message) from None
    for index, event in enumerate(events):
        referrer = event.get("referrer")
        if referrer and not referrer.keys() <= _REFERRER_FIELDS:
            _referrer_click_ids(cast(dict[str, Any], referrer), _join(event_field_prefix(prefix, index), "referrer"))
    return events, prefix


def _referrer_click_ids(referrer: dict[str, Any], field: str) -> None:
    """Renames, in place, each referrer key beyond the declared ones to the click id type it names (any case:
    `ScCid` -> `sccid`); a key no network names is refused, as pydantic refuses any other unknown field."""
    for name in [name for name in referrer if name not in _REFERRER_FIELDS]:
        click_id_type = registry().click_id_type_of(name)
        path = _join(field, name)
        if click_id_type is None:
            raise InputError(path, "Extra inputs are not permitted")
        value = referrer.pop(name)
        if value is not None and not isinstance(value, str):
            raise InputError(path, "Input should be a valid string")
        value = value.strip() if value is not None else None
        if value is not None and len(value) > MAX_CLICK_ID_LENGTH:
            raise InputError(path, f"String should have at most {MAX_CLICK_ID_LENGTH} characters")
        if referrer.get(click_id_type) is None:
            referrer[click_id_type] = value


# The events were pydantic models before they were TypedDicts: an event or typed part that is not an
# object keeps the models' message, which clients may match on.
_PART_MODELS = {"device": "DeviceIn", "referrer": "ReferrerIn", "revenue": "RevenueIn"}


def _model_message(loc: tuple[int | str, ...], error_type: str) -> str | None:
    if error_type != "dict_type":
        return None
    if len(loc) == 1:
        return "Input should be a valid dictionary or instance of EventIn"
    if len(loc) == 2 and loc[1] in _PART_MODELS:
        return f"Input should be a valid dictionary or instance of {_PART_MODELS[loc[1]]}"
    return None


def raw_event_record(
    event: EventIn, *, app_id: str, sandbox: bool, received_at_ms: int, request_ip: str | None,
    request_user_agent: str | None, field: str, max_revenue_amount: float, source: str = "sdk",
) -> dict[str, Any]:
    """The events.raw record: time normalised, request defaults filled, personal data hashed, revenue
    within 0..max_revenue_amount (the app's bound).

    Personal data outside `user` (services/privacy/personal_data.py): fields named like it, in properties and
    extra fields at any depth and in the install referrer, are hashed in place, and the first valid email,
    phone, first and last name and date of birth among them fill the user hashes `user` leaves empty;
    other strings shaped like an email address or a phone number are dropped (counted and logged); an
    identifier (event id and name, device and advertising ids, click ids) shaped like one is an InputError."""
    try:
        event_time_ms = parse_event_time(event["event_time"], received_at_ms)
    except ValueError as exc:
        raise InputError(_join(field, "event_time"), str(exc)) from None
    user = event.get("user")
    try:
        user_hashes = hash_user_data(user) if user else {}
    except InputError as exc:  # a user field: named within the event
        raise InputError(_join(field, exc.field), str(exc)) from None
    _check_identifiers(event, field)
    findings = Findings()
    device: dict[str, Any] = {**_NO_DEVICE_VALUES, **event["device"]}
    device["ip"] = device["ip"] or request_ip
    device["user_agent"] = device["user_agent"] or request_user_agent
    for name in DEVICE_TEXT:
        text = device[name]
        if text is not None and value_kind(text) is not None:
            device[name] = scrub_text(text, _join(field, f"device.{name}"), findings)
    referrer = event.get("referrer")
    referrer_values: dict[str, Any] = {k: v for k, v in referrer.items() if v} if referrer else {}
    if "install_referrer" in referrer_values:
        install_referrer = scrub_referrer(referrer_values["install_referrer"],
                                          _join(field, "referrer.install_referrer"), findings)
        if install_referrer is None:
            del referrer_values["install_referrer"]
        else:
            referrer_values["install_referrer"] = install_referrer
    try:
        properties = _properties_with_extras(event, event.get("properties", {}), field, findings)
    except TooDeep as exc:  # parse_events refuses such bodies first
        raise InputError("body", str(exc)) from None
    revenue = event.get("revenue")
    if revenue is not None:
        check_revenue_amount(revenue["amount"], max_revenue_amount, _join(field, "revenue.amount"))
    if findings.user_hashes:
        user_hashes = with_offered_hashes(user_hashes, findings)
    report_drops("events", findings, app_id=app_id)
    return {
        "event_id": event["event_id"],
        "app_id": app_id,
        "event_name": event["event_name"],
        "event_time_ms": event_time_ms,
        "received_at_ms": received_at_ms,
        "sandbox": sandbox,
        "source": source,
        "device": device,
        "referrer": referrer_values,
        "user_hashes": user_hashes,
        "revenue_amount": revenue["amount"] if revenue else None,
        "revenue_currency": revenue["currency"].upper() if revenue else None,
        "properties_json": orjson.dumps(properties).decode(),
    }


def check_revenue_amount(amount: float, bound: float, field: str, *, allow_refunds: bool = False) -> None:
    """Raises InputError(field, ...) unless 0 <= amount <= bound; with `allow_refunds` (negative amounts),
    unless -bound <= amount <= bound."""
    if not math.isfinite(amount):
        raise InputError(field, "must be a finite number")
    low = -bound if allow_refunds else 0.0
    if not low <= amount <= bound:
        raise InputError(field, f"must be between {_amount_text(low)} and {_amount_text(bound)}")


def _amount_text(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else repr(float(value))


def _check_identifiers(event: EventIn, field: str) -> None:
    """Raises InputError naming the first identifier that looks like an email address or a phone number."""
    referrer = event.get("referrer") or {}
    parts: list[tuple[str, Any, tuple[str, ...]]] = [
        ("", event, ("event_id", "event_name")), ("device.", event["device"], DEVICE_IDENTIFIERS),
        ("referrer.", referrer, tuple(name for name in referrer if name != "install_referrer"))]
    for prefix, part, names in parts:
        for name in names:
            value = part.get(name)
            problem = identifier_problem(value) if value else None  # a cached lookup for a repeated id
            if problem is not None:
                raise InputError(_join(field, prefix + name), problem)


def _properties_with_extras(event: EventIn, given: dict[str, Any], field: str, findings: Findings) -> dict[str, Any]:
    """`properties` plus the event's fields beyond the contract, in the order sent (an extra wins a clash),
    with personal data hashed or dropped."""
    properties: dict[str, Any] = scrub(given, _join(field, "properties"), findings) if given else given
    if event.keys() <= _EVENT_FIELDS:
        return properties
    extras = {name: value for name, value in event.items() if name not in _EVENT_FIELDS}
    return {**properties, **scrub(extras, field, findings)}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def event_field_prefix(prefix: str, index: int) -> str:
    return f"{prefix}[{index}]" if prefix else ""
