"""SDK events and server-to-server clicks as accepted by the gateway: validation and shaping.

Pure: request JSON in, Avro-ready records out, or an `InputError` naming the offending field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from services.gateway.user_data import UserDataError, hash_user_data

# Far-future and ancient timestamps are client bugs; the networks reject them anyway.
MAX_FUTURE_MS = 24 * 3600 * 1000
MIN_EVENT_TIME_MS = 1_262_304_000_000  # 2010-01-01
# Deeper request JSON is refused: orjson parses 1024 levels but serialises only 254, and nothing we accept
# needs more than a few.
MAX_JSON_DEPTH = 64

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
ClickIdValue = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
PERSONAL_FIELD_NAMES = frozenset({
    "email", "phone", "phone_number", "first_name", "last_name", "date_of_birth", "em", "ph", "fn", "ln", "db",
})
TIME_FORMAT_ERROR = "must be RFC 3339 or epoch seconds/milliseconds"


def _time_type(value: Any) -> Any:
    # Checked before the union: otherwise pydantic turns true into 1 and names a bad type's
    # error after a union member ("event_time.constrained-str") instead of the field.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(TIME_FORMAT_ERROR)
    return value


class InputError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def as_json(self) -> dict[str, str]:
        return {"error": "invalid_request", "field": self.field, "message": self.message}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DeviceIn(_Strict):
    device_id: Id
    idfa: Text | None = None
    gaid: Text | None = None
    ip: Text | None = None
    user_agent: Text | None = None
    os: Literal["ios", "android"] | None = None
    os_version: Text | None = None
    model: Text | None = None
    locale: Text | None = None
    att_status: Text | None = None
    app_version: Text | None = None


class ReferrerIn(_Strict):
    install_referrer: Annotated[str, StringConstraints(max_length=4000)] | None = None
    click_id: ClickIdValue | None = None
    fbclid: ClickIdValue | None = None
    gclid: ClickIdValue | None = None
    gbraid: ClickIdValue | None = None
    wbraid: ClickIdValue | None = None
    ttclid: ClickIdValue | None = None


class RevenueIn(_Strict):
    amount: Annotated[float, Field(strict=True)]  # strict: "9.99" and true are not amounts
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]


class EventIn(BaseModel):
    # Fields beyond the contract are kept in `properties`, so the top level allows extras.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    event_id: Id
    event_name: Id
    event_time: Annotated[str | int | float, BeforeValidator(_time_type)]
    device: DeviceIn
    referrer: ReferrerIn | None = None
    user: dict[str, Any] | None = None
    revenue: RevenueIn | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


_EVENTS = TypeAdapter(list[EventIn])


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


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raises InputError("body", ...) when arrays/objects nest deeper than `limit`. Iterative: no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, level = stack.pop()
        if level > limit:
            raise InputError("body", f"JSON nested deeper than {limit} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))


def parse_events(body: Any, max_batch: int) -> tuple[list[EventIn], str]:
    """Accepts one event or {"events": [...]}; returns the events and the field prefix used."""
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
        if not prefix:
            loc = loc[1:]  # a single event: no list index in the field name
        raise InputError(_field_path(prefix, loc) or "body", first["msg"]) from None
    return events, prefix


def raw_event_record(
    event: EventIn, *, app_id: str, sandbox: bool, received_at_ms: int, request_ip: str | None,
    request_user_agent: str | None, field: str, source: str = "sdk",
) -> dict[str, Any]:
    """The events.raw record: time normalised, request defaults filled, personal data hashed."""
    try:
        event_time_ms = parse_event_time(event.event_time, received_at_ms)
    except ValueError as exc:
        raise InputError(_join(field, "event_time"), str(exc)) from None
    try:
        user_hashes = hash_user_data(event.user or {})
    except UserDataError as exc:
        raise InputError(_join(field, exc.field), str(exc)) from None
    device = event.device.model_dump()
    device["ip"] = device["ip"] or request_ip
    device["user_agent"] = device["user_agent"] or request_user_agent
    referrer = {k: v for k, v in (event.referrer.model_dump() if event.referrer else {}).items() if v}
    properties = dict(event.properties)
    properties.update(event.model_extra or {})
    misplaced = PERSONAL_FIELD_NAMES.intersection(properties)
    if misplaced:
        # Raw personal data must never reach Kafka: it is only accepted in `user`, where it is hashed.
        name = sorted(misplaced)[0]
        where = "properties." + name if name in event.properties else name
        raise InputError(_join(field, where), "personal data belongs in `user`, where it is hashed")
    revenue = event.revenue
    if revenue is not None and not math.isfinite(revenue.amount):
        raise InputError(_join(field, "revenue.amount"), "must be a finite number")
    return {
        "event_id": event.event_id,
        "app_id": app_id,
        "event_name": event.event_name,
        "event_time_ms": event_time_ms,
        "received_at_ms": received_at_ms,
        "sandbox": sandbox,
        "source": source,
        "device": device,
        "referrer": referrer,
        "user_hashes": user_hashes,
        "revenue_amount": revenue.amount if revenue else None,
        "revenue_currency": revenue.currency.upper() if revenue else None,
        "properties_json": orjson.dumps(properties).decode(),
    }


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def event_field_prefix(prefix: str, index: int) -> str:
    return f"{prefix}[{index}]" if prefix else ""
