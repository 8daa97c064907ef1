"""Conversion schemas and the decoding of SKAdNetwork postbacks into install and in-app event records. Pure.

A conversion value means nothing without the app's schema in force when it was encoded, so a schema is
versioned by ``valid_from`` and chosen by the postback's estimated install time. Every record keeps the
schema id and the raw values, so a postback can be decoded again when a schema is corrected.

Schema JSON (``PUT /admin/v1/apps/{app_id}/skan/schema``)::

    {"schema_id": "s1", "valid_from": "2020-01-01T00:00:00Z", "signature_policy": "enforce",
     "mode": "revenue", "event_name": "af_skad_revenue", "currency": "USD", "unit": 1.0}
    {..., "mode": "conversion", "events": ["af_level_complete", "af_login", ...]}      (bit i -> events[i])
    {..., "mode": "engagement", "event_name": "af_skad_revenue"}                     (value n -> n times)
    {..., "mode": "table", "fine": {"7": [ROW, ...]},
     "coarse": {"0": {"low": [ROW, ...], "medium": [...], "high": [...]}, "1": {...}, "2": {...}}}

    ROW = {"event_name": "purchase", "min_count": 1, "max_count": 1, "min_revenue": 6.0,
           "max_revenue": 7.0, "currency": "USD", "min_hours": 0, "max_hours": 24}

``coarse`` (SKAN 4 coarse values, per window) is accepted in every mode; ``fine`` only in table mode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal, cast

import orjson

from services.domain.skan.postback_input import (
    COARSE_VALUES,
    MAX_FINE_VALUE,
    MAX_SEQUENCE_INDEX,
    flag,
    postback_timestamp_ms,
    sequence_index,
)
from shared.errors import InputError

__all__ = [
    "ATTRIBUTION_SOURCE",
    "SIMULATED_TEST_APP_SCHEMAS",
    "ConversionSchema",
    "DecodedRecord",
    "Mode",
    "RecordKind",
    "SignaturePolicy",
    "TableRow",
    "decode",
    "estimated_install_time",
    "is_winning",
    "occurrences",
    "parse_schema",
    "schema_in_force",
]

ATTRIBUTION_SOURCE = "skadnetwork"

Mode = Literal["revenue", "conversion", "engagement", "table"]
SignaturePolicy = Literal["enforce", "record", "skip"]
RecordKind = Literal["install", "redownload", "event"]

MODES: tuple[Mode, ...] = ("revenue", "conversion", "engagement", "table")
SIGNATURE_POLICIES: tuple[SignaturePolicy, ...] = ("enforce", "record", "skip")
MAX_CONVERSION_EVENTS = 6  # six bits in a fine value

# Keys each mode accepts besides the common ones; anything else is a typo we would rather reject than ignore.
_COMMON_KEYS = frozenset({"schema_id", "valid_from", "signature_policy", "mode", "coarse", "currency"})
_MODE_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "revenue": frozenset({"event_name", "unit"}),
        "conversion": frozenset({"events"}),
        "engagement": frozenset({"event_name"}),
        "table": frozenset({"fine"}),
    }
)
_ROW_KEYS = frozenset(
    {"event_name", "min_count", "max_count", "min_revenue", "max_revenue", "currency", "min_hours", "max_hours"}
)
# RFC 3339 date-time: date, T (or space), time, optional fraction, mandatory offset.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class TableRow:
    """One decoded event of a table (or coarse) mapping, as MMPs export it."""

    event_name: str
    min_count: int = 1
    max_count: int = 1
    min_revenue: float | None = None
    max_revenue: float | None = None
    currency: str | None = None  # None: the schema's currency
    min_hours: float | None = None
    max_hours: float | None = None


@dataclass(frozen=True)
class ConversionSchema:
    """A validated schema. Its mappings are plain dicts (dataclasses.asdict and deepcopy work), typed as
    read-only Mappings: treat them as immutable."""

    schema_id: str
    valid_from: datetime  # aware, UTC
    mode: Mode
    signature_policy: SignaturePolicy = "enforce"
    event_name: str | None = None  # revenue, engagement
    events: tuple[str, ...] = ()  # conversion: events[i] is bit i, least significant first
    currency: str = "USD"
    unit: float = 1.0  # revenue: value n is n * unit
    fine: Mapping[int, tuple[TableRow, ...]] = field(default_factory=dict)  # table: value -> rows
    # window (postback-sequence-index) -> "low" | "medium" | "high" -> rows
    coarse: Mapping[int, Mapping[str, tuple[TableRow, ...]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form parse_schema accepts (for storage and the admin API's GET)."""
        out: dict[str, Any] = {
            "schema_id": self.schema_id,
            "valid_from": self.valid_from.isoformat().replace("+00:00", "Z"),
            "signature_policy": self.signature_policy,
            "mode": self.mode,
            "currency": self.currency,
        }
        if self.mode in ("revenue", "engagement"):
            out["event_name"] = self.event_name
        if self.mode == "revenue":
            out["unit"] = self.unit
        if self.mode == "conversion":
            out["events"] = list(self.events)
        if self.mode == "table":
            out["fine"] = {str(value): [_row_dict(row) for row in rows] for value, rows in self.fine.items()}
        if self.coarse:
            out["coarse"] = {
                str(window): {level: [_row_dict(row) for row in rows] for level, rows in levels.items()}
                for window, levels in self.coarse.items()
            }
        return out


@dataclass(frozen=True)
class DecodedRecord:
    """An install (or redownload) or an in-app event decoded from one postback.

    Events carry the schema's ranges: ``count`` = ceil((min_count + max_count) / 2) and ``revenue`` = the
    average of min_revenue and max_revenue (the guide's derived figures). An install has count 1 and no
    ranges. ``conversion_value`` / ``coarse_conversion_value`` are the postback's raw values and
    ``schema_id`` the schema used (None: no schema in force), so the record can be decoded again.
    """

    kind: RecordKind
    event_name: str | None
    count: int
    min_count: int | None
    max_count: int | None
    revenue: float | None
    min_revenue: float | None
    max_revenue: float | None
    currency: str | None
    min_hours: float | None
    max_hours: float | None
    schema_id: str | None
    conversion_value: int | None
    coarse_conversion_value: str | None
    postback_sequence_index: int
    value_unknown: bool  # the postback carried no value (Apple's privacy threshold): never read as 0
    attribution_source: str = ATTRIBUTION_SOURCE


# --------------------------------------------------------------------------------------------- parsing


def _row_dict(row: TableRow) -> dict[str, Any]:
    out: dict[str, Any] = {"event_name": row.event_name, "min_count": row.min_count, "max_count": row.max_count}
    for name in ("min_revenue", "max_revenue", "currency", "min_hours", "max_hours"):
        value = getattr(row, name)
        if value is not None:
            out[name] = value
    return out


def _text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, "must be a non-empty string")
    return value.strip()


def _int(value: object, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(path, "must be an integer")
    if value < minimum:
        raise InputError(path, f"must be >= {minimum}")
    return value


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(path, "must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InputError(path, "must be a finite number >= 0")
    return number


def _currency(value: object, path: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InputError(path, "must be an ISO 4217 code such as USD")
    return value


def _timestamp(value: object, path: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise InputError(path, "must be an RFC 3339 date-time with an offset, such as 2020-01-01T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:  # 2020-02-30 and the like
        raise InputError(path, f"is not a valid date-time ({exc})") from None
    return parsed.astimezone(UTC)


def _range(row: Mapping[str, Any], low: str, high: str, path: str) -> tuple[float | None, float | None]:
    if row.get(low) is None and row.get(high) is not None:
        raise InputError(f"{path}.{low}", f"required with {high}")
    if row.get(high) is None and row.get(low) is not None:
        raise InputError(f"{path}.{high}", f"required with {low}")
    if row.get(low) is None:
        return None, None
    lo, hi = _number(row[low], f"{path}.{low}"), _number(row[high], f"{path}.{high}")
    if hi < lo:
        raise InputError(f"{path}.{high}", f"must be >= {low}")
    return lo, hi


def _row(raw: object, path: str) -> TableRow:
    if not isinstance(raw, Mapping):
        raise InputError(path, "must be an object")
    unknown = sorted(set(raw) - _ROW_KEYS)
    if unknown:
        raise InputError(f"{path}.{unknown[0]}", "unknown field")
    event_name = _text(raw.get("event_name"), f"{path}.event_name")
    min_count = _int(raw.get("min_count", 1), f"{path}.min_count")
    max_count = _int(raw.get("max_count", min_count), f"{path}.max_count", minimum=1)
    if max_count < min_count:
        raise InputError(f"{path}.max_count", "must be >= min_count")
    min_revenue, max_revenue = _range(raw, "min_revenue", "max_revenue", path)
    min_hours, max_hours = _range(raw, "min_hours", "max_hours", path)
    currency = raw.get("currency")
    return TableRow(
        event_name=event_name,
        min_count=min_count,
        max_count=max_count,
        min_revenue=min_revenue,
        max_revenue=max_revenue,
        currency=None if currency is None else _currency(currency, f"{path}.currency"),
        min_hours=min_hours,
        max_hours=max_hours,
    )


def _rows(raw: object, path: str) -> tuple[TableRow, ...]:
    if not isinstance(raw, list):
        raise InputError(path, "must be a list of rows")
    return tuple(_row(item, f"{path}[{i}]") for i, item in enumerate(raw))


def _index_key(key: object, path: str, maximum: int) -> int:
    # Canonical decimals only: "07" next to "7" would silently overwrite one of them.
    if not isinstance(key, str) or key not in {str(i) for i in range(maximum + 1)}:
        raise InputError(f"{path}.{key}", f"key must be an integer from 0 to {maximum}")
    return int(key)


def _fine(raw: object) -> Mapping[int, tuple[TableRow, ...]]:
    if not isinstance(raw, Mapping):
        raise InputError("fine", "must be an object of conversion value -> rows")
    table = {_index_key(key, "fine", MAX_FINE_VALUE): _rows(rows, f"fine.{key}") for key, rows in raw.items()}
    return dict(sorted(table.items()))


def _coarse(raw: object) -> Mapping[int, Mapping[str, tuple[TableRow, ...]]]:
    if not isinstance(raw, Mapping):
        raise InputError("coarse", "must be an object of window -> {low, medium, high}")
    windows: dict[int, Mapping[str, tuple[TableRow, ...]]] = {}
    for key, levels in raw.items():
        window = _index_key(key, "coarse", MAX_SEQUENCE_INDEX)
        if not isinstance(levels, Mapping):
            raise InputError(f"coarse.{key}", "must be an object with low, medium and/or high")
        for level in levels:
            if level not in COARSE_VALUES:
                raise InputError(f"coarse.{key}.{level}", "must be low, medium or high")
        windows[window] = {
            level: _rows(levels[level], f"coarse.{key}.{level}") for level in COARSE_VALUES if level in levels
        }
    return dict(sorted(windows.items()))


def parse_schema(data: Mapping[str, Any] | str | bytes) -> ConversionSchema:
    """Validate a schema (JSON text or the parsed object); raises InputError naming the field.

    Required: schema_id, valid_from (RFC 3339), mode, and the mode's own fields (revenue, engagement:
    event_name; conversion: events, 1 to 6 names; table: fine and/or coarse). Defaults: signature_policy
    "enforce", currency "USD", unit 1.0. Unknown keys, and keys of another mode, are rejected: a typo must
    not silently fall back to a default.
    """
    if isinstance(data, str | bytes):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InputError("body", f"malformed JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise InputError("body", "must be a JSON object")

    mode = data.get("mode")
    if mode not in MODES:
        raise InputError("mode", f"must be one of {', '.join(MODES)}")
    unknown = sorted(set(data) - _COMMON_KEYS - _MODE_KEYS[mode])
    if unknown:
        raise InputError(unknown[0], f"not a field of a {mode} schema")
    policy = data.get("signature_policy") or "enforce"  # null = absent
    if policy not in SIGNATURE_POLICIES:
        raise InputError("signature_policy", f"must be one of {', '.join(SIGNATURE_POLICIES)}")

    schema_id = _text(data.get("schema_id"), "schema_id")
    valid_from = _timestamp(data.get("valid_from"), "valid_from")
    currency = _currency(data.get("currency") or "USD", "currency")
    coarse = _coarse(data["coarse"]) if data.get("coarse") is not None else {}
    event_name: str | None = None
    events: tuple[str, ...] = ()
    unit = 1.0
    fine: Mapping[int, tuple[TableRow, ...]] = {}

    if mode in ("revenue", "engagement"):
        event_name = _text(data.get("event_name"), "event_name")
    if mode == "revenue" and data.get("unit") is not None:
        unit = _number(data["unit"], "unit")
        if unit == 0:
            raise InputError("unit", "must be > 0")
    if mode == "conversion":
        raw_events = data.get("events")
        if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_CONVERSION_EVENTS:
            raise InputError("events", f"must be a list of 1 to {MAX_CONVERSION_EVENTS} event names")
        events = tuple(_text(name, f"events[{i}]") for i, name in enumerate(raw_events))
    if mode == "table":
        if data.get("fine") is None and not coarse:
            raise InputError("fine", "a table schema needs fine and/or coarse rows")
        if data.get("fine") is not None:
            fine = _fine(data["fine"])

    return ConversionSchema(
        schema_id=schema_id,
        valid_from=valid_from,
        mode=cast(Mode, mode),
        signature_policy=cast(SignaturePolicy, policy),
        event_name=event_name,
        events=events,
        currency=currency,
        unit=unit,
        fine=fine,
        coarse=coarse,
    )


def schema_in_force(schemas: Iterable[ConversionSchema], install_time: datetime) -> ConversionSchema | None:
    """The schema with the latest ``valid_from`` <= install_time; on a tie the later one in ``schemas``."""
    chosen: ConversionSchema | None = None
    for schema in schemas:
        if schema.valid_from <= install_time and (chosen is None or schema.valid_from >= chosen.valid_from):
            chosen = schema
    return chosen


# ---------------------------------------------------------------------------------------- install time

# Apple's random delay that the guide's formula subtracts: postback arrival - 48 h - time post install.
_GUIDE_DELAY = timedelta(hours=48)
# SKAN 1-3 without table hours: the value is measured in the first day (the SDK's default 24 h measurement
# window), so the time post install is taken as the middle of 0-24 h.
_DEFAULT_HOURS_POST_INSTALL = (0.0, 24.0)
# SKAN 4 sends window k's postback when the window ends (day 2, 7, 35 after install) plus a random delay
# (24-48 h for window 0, 24-144 h for windows 1 and 2), whenever inside the window the event happened; so
# install -> arrival is typically window end + mean delay. The table's hours do not change that.
_SKAN4_TYPICAL_DELAY_HOURS: Mapping[int, float] = MappingProxyType({0: 48 + 36, 1: 168 + 84, 2: 840 + 84})
# The same offsets as timedeltas, built once rather than per postback.
_SKAN4_TYPICAL_DELAY: Mapping[int, timedelta] = MappingProxyType(
    {window: timedelta(hours=hours) for window, hours in _SKAN4_TYPICAL_DELAY_HOURS.items()}
)
_DEFAULT_INSTALL_TO_ARRIVAL = _GUIDE_DELAY + timedelta(hours=sum(_DEFAULT_HOURS_POST_INSTALL) / 2)
_PLAUSIBLE_FROM = datetime(2018, 1, 1, tzinfo=UTC)  # SKAdNetwork shipped in iOS 11.3
_CLOCK_SKEW = timedelta(hours=1)


_DOTTED_VERSION = re.compile(r"\d{1,3}(\.\d{1,3})*")


def _version(postback: Mapping[str, Any]) -> tuple[int, ...] | None:
    """(major, minor); absent is 1.0; None when not a dotted number."""
    raw = postback.get("version")
    if raw is None:
        return (1, 0)
    if not isinstance(raw, str):
        return None
    return _parse_version(raw)


@lru_cache(maxsize=64)  # a handful of real versions; bounded against junk ones
def _parse_version(raw: str) -> tuple[int, ...] | None:
    if not _DOTTED_VERSION.fullmatch(raw):
        return None
    return tuple(int(part) for part in raw.split("."))


def _arrival(postback: Mapping[str, Any], received_at: datetime) -> datetime:
    """When the device sent the postback: the network's ``timestamp`` when plausible, else our receipt."""
    ms = postback_timestamp_ms(postback)
    if ms is not None:
        arrival = datetime.fromtimestamp(ms / 1000, tz=UTC)
        if _PLAUSIBLE_FROM <= arrival <= received_at + _CLOCK_SKEW:
            return arrival
    return received_at


def estimated_install_time(
    postback: Mapping[str, Any],
    received_at: datetime,
    *,
    hours_post_install: tuple[float, float] | None = None,
) -> datetime:
    """The estimated install time, used to choose the schema in force.

    Postback arrival = the network's ``timestamp`` (10 or 13 digits) when present and not after our own
    receipt (+1 h of clock skew), else ``received_at`` (aware). Then:

    - SKAN 1-3 (the guide): arrival - 48 h - average(min, max time post install), with the hours of the
      decoded table row when the caller has them (``hours_post_install``), else 0-24 h (average 12 h).
    - SKAN 4 window k: arrival - (window end + mean random delay) = 84 h, 252 h, 924 h for windows 0, 1, 2.

    Chicken and egg: the schema is chosen with this estimate, so the first call has no table hours; a caller
    may refine the estimate with the decoded rows' hours afterwards (SKAN 1-3 only).
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    arrival = _arrival(postback, received_at)
    version = _version(postback)
    if version is not None and version >= (4,):
        window = min(sequence_index(postback), MAX_SEQUENCE_INDEX)
        return arrival - _SKAN4_TYPICAL_DELAY[window]
    if not hours_post_install:
        return arrival - _DEFAULT_INSTALL_TO_ARRIVAL
    low, high = hours_post_install
    return arrival - _GUIDE_DELAY - timedelta(hours=(low + high) / 2)


# --------------------------------------------------------------------------------------------- decoding


def is_winning(postback: Mapping[str, Any]) -> bool:
    """Attributed: ``did-win`` is not false, or the version predates 3.0 (every such postback is the winner)."""
    version = _version(postback)
    if version is not None and version < (3,):
        return True
    return flag(postback.get("did-win")) is not False


def _fine_value(postback: Mapping[str, Any]) -> int | None:
    value = postback.get("conversion-value")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FINE_VALUE:
        raise ValueError("conversion-value must be an integer from 0 to 63, or null")
    return value


def _coarse_value(postback: Mapping[str, Any]) -> str | None:
    value = postback.get("coarse-conversion-value")
    if value is None:
        return None
    if value not in COARSE_VALUES:
        raise ValueError("coarse-conversion-value must be low, medium or high, or null")
    return cast(str, value)


def _money(value: Decimal) -> float:
    return float(value.normalize())


def decode(postback: Mapping[str, Any], schema: ConversionSchema | None) -> list[DecodedRecord]:
    """The install (or redownload) record first, then the event records; [] when it is no attribution.

    - Non-winning (``did-win`` false, version >= 3.0): [] (the caller stores and counts it).
    - SKAN 4 windows 1 and 2 (postback-sequence-index 1, 2) report on an install window 0 already counted:
      they yield event records only, never a second or third install. They only have coarse values; a fine
      value there is ignored.
    - Fine value: 0 = install only; 1-63 = the schema's mode. Else coarse value: schema.coarse[window][value].
      Neither (absent or null) = install only with ``value_unknown`` True. No schema in force: install only,
      schema_id None, the raw values kept for a later decode.
    - Raises ValueError for an AdAttributionKit postback (route it apart) or a value parse_postback rejects.
    """
    if postback.get("jws-string") is not None:
        raise ValueError("AdAttributionKit postbacks (jws-string) are not decoded here")
    window = sequence_index(postback)
    fine = _fine_value(postback) if window == 0 else None
    coarse = _coarse_value(postback)
    if not is_winning(postback):
        return []

    base: dict[str, Any] = {
        "schema_id": schema.schema_id if schema is not None else None,
        "conversion_value": fine,
        "coarse_conversion_value": coarse,
        "postback_sequence_index": window,
    }
    records: list[DecodedRecord] = []
    if window == 0:
        kind: RecordKind = "redownload" if flag(postback.get("redownload")) else "install"
        records.append(_install(kind, base, value_unknown=fine is None and coarse is None))
    if schema is None:
        return records
    if fine is not None:
        rows = _fine_rows(schema, fine)
    elif coarse is not None:
        rows = schema.coarse.get(window, {}).get(coarse, ())
    else:
        rows = ()
    records.extend(_event(row, schema, base) for row in rows)
    return records


def _install(kind: RecordKind, base: Mapping[str, Any], *, value_unknown: bool) -> DecodedRecord:
    return DecodedRecord(
        **{
            "kind": kind,
            "event_name": None,
            "count": 1,
            "min_count": None,
            "max_count": None,
            "revenue": None,
            "min_revenue": None,
            "max_revenue": None,
            "currency": None,
            "min_hours": None,
            "max_hours": None,
            **base,
            "value_unknown": value_unknown,
        }
    )


def _fine_rows(schema: ConversionSchema, value: int) -> tuple[TableRow, ...]:
    if value == 0:
        return ()
    if schema.mode in _DERIVED_MODES:
        events = tuple(schema.events)  # hashable even if a caller built the schema with a list
        return _derived_rows(schema.mode, schema.event_name, events, schema.unit, schema.currency, value)
    return schema.fine.get(value, ())


_DERIVED_MODES = frozenset({"revenue", "engagement", "conversion"})


# The rows of the revenue, engagement and conversion modes are a pure function of these schema fields and the
# value (64 values): computed once each, not per postback. typed: unit 7 and 7.0 stay apart (repr differs).
@lru_cache(maxsize=1024, typed=True)
def _derived_rows(
    mode: Mode, event_name: str | None, events: tuple[str, ...], unit: float, currency: str, value: int
) -> tuple[TableRow, ...]:
    if mode == "revenue":
        assert event_name is not None  # parse_schema guarantees it
        amount = _money(Decimal(repr(unit)) * value)
        return (TableRow(event_name, 1, 1, amount, amount, currency),)
    if mode == "engagement":
        assert event_name is not None
        return (TableRow(event_name, value, value),)
    # conversion: bits past the configured events carry nothing we could name, ignored.
    return tuple(TableRow(name) for bit, name in enumerate(events) if value >> bit & 1)


@lru_cache(maxsize=1024, typed=True)
def _mid_revenue(min_revenue: float, max_revenue: float) -> float:
    return _money((Decimal(repr(min_revenue)) + Decimal(repr(max_revenue))) / 2)


def _event(row: TableRow, schema: ConversionSchema, base: Mapping[str, Any]) -> DecodedRecord:
    revenue = None
    if row.min_revenue is not None and row.max_revenue is not None:
        revenue = _mid_revenue(row.min_revenue, row.max_revenue)
    return DecodedRecord(
        **{
            "kind": "event",
            "event_name": row.event_name,
            "count": -(-(row.min_count + row.max_count) // 2),  # ceil((min + max) / 2)
            "min_count": row.min_count,
            "max_count": row.max_count,
            "revenue": revenue,
            "min_revenue": row.min_revenue,
            "max_revenue": row.max_revenue,
            "currency": (row.currency or schema.currency) if revenue is not None else None,
            "min_hours": row.min_hours,
            "max_hours": row.max_hours,
            **base,
            "value_unknown": False,
        }
    )


def occurrences(records: Sequence[DecodedRecord]) -> list[DecodedRecord]:
    """One entry per postback to send a network: installs once, each event record ``count`` times.

    Engagement 3 is one record with count 3 and three decoded postbacks (the guide's test app 888707087).
    The position in this list is the ``record_index`` of macros.postback_id.
    """
    return [record for record in records for _ in range(1 if record.kind != "event" else record.count)]


# ------------------------------------------------------------------------------------ simulated test apps

_TEST_FROM = "2020-01-01T00:00:00Z"
# The guide's simulated test apps (postbacks carry no signature, hence signature_policy "skip"):
# 888707085 revenue in $1 units (value 7 -> $7), 888707086 conversion bitmask (63 -> six events),
# 888707087 engagement (3 -> three events). Keyed by the postback's app-id.
SIMULATED_TEST_APP_SCHEMAS: Mapping[str, ConversionSchema] = MappingProxyType(
    {
        "888707085": parse_schema(
            {
                "schema_id": "test-app-888707085",
                "valid_from": _TEST_FROM,
                "signature_policy": "skip",
                "mode": "revenue",
                "event_name": "af_skad_revenue",
                "currency": "USD",
                "unit": 1.0,
            }
        ),
        "888707086": parse_schema(
            {
                "schema_id": "test-app-888707086",
                "valid_from": _TEST_FROM,
                "signature_policy": "skip",
                "mode": "conversion",
                "events": [
                    "af_level_complete",
                    "af_login",
                    "af_skad_revenue",
                    "af_register",
                    "af_subscription",
                    "af_custom_event",
                ],
            }
        ),
        "888707087": parse_schema(
            {
                "schema_id": "test-app-888707087",
                "valid_from": _TEST_FROM,
                "signature_policy": "skip",
                "mode": "engagement",
                "event_name": "af_skad_revenue",
            }
        ),
    }
)
