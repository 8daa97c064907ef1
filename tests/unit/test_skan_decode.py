"""services.domain.skan.decode: conversion schemas, schema choice by install time, postbacks into records."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.domain.skan.decode import (
    ATTRIBUTION_SOURCE,
    SIMULATED_TEST_APP_SCHEMAS,
    ConversionSchema,
    DecodedRecord,
    TableRow,
    decode,
    estimated_install_time,
    is_winning,
    occurrences,
    parse_schema,
    schema_in_force,
)
from shared.errors import InputError

FROM = "2020-01-01T00:00:00Z"
REVENUE: dict[str, Any] = {
    "schema_id": "s1",
    "valid_from": FROM,
    "signature_policy": "enforce",
    "mode": "revenue",
    "event_name": "af_skad_revenue",
    "currency": "USD",
    "unit": 1.0,
}
SIX_EVENTS = ["af_level_complete", "af_login", "af_skad_revenue", "af_register", "af_subscription", "af_custom_event"]
CONVERSION: dict[str, Any] = {"schema_id": "c1", "valid_from": FROM, "mode": "conversion", "events": SIX_EVENTS}
ENGAGEMENT: dict[str, Any] = {
    "schema_id": "e1",
    "valid_from": FROM,
    "mode": "engagement",
    "event_name": "af_skad_revenue",
}


def row(event: str, **extra: Any) -> dict[str, Any]:
    return {"event_name": event, **extra}


PURCHASE_7 = {
    "event_name": "purchase",
    "min_count": 1,
    "max_count": 1,
    "min_revenue": 6.0,
    "max_revenue": 7.0,
    "currency": "USD",
    "min_hours": 0,
    "max_hours": 24,
}
TABLE: dict[str, Any] = {
    "schema_id": "t1",
    "valid_from": FROM,
    "mode": "table",
    "currency": "EUR",
    "fine": {
        "7": [PURCHASE_7],
        "9": [row("level", min_count=0, max_count=10), row("login", min_count=0, max_count=1)],
        "12": [row("tip", min_revenue=0.1, max_revenue=0.2)],  # currency from the schema
    },
    "coarse": {
        "0": {"low": [row("w0_low")], "medium": [row("w0_medium")], "high": [row("w0_high"), row("w0_high_b")]},
        "1": {"low": [row("w1_low")], "medium": [row("w1_medium")], "high": [row("w1_high")]},
        "2": {"low": [], "medium": [row("w2_medium")], "high": [row("w2_high", min_hours=168, max_hours=840)]},
    },
}

RECEIVED = datetime(2023, 3, 10, 12, 0, tzinfo=UTC)


def skan3(value: int | None = None, **extra: Any) -> dict[str, Any]:
    postback: dict[str, Any] = {
        "version": "3.0",
        "ad-network-id": "example123.skadnetwork",
        "campaign-id": 42,
        "app-id": 525463029,
        "transaction-id": "tx-3",
        "redownload": False,
        "fidelity-type": 1,
        "did-win": True,
        **extra,
    }
    if value is not None:
        postback["conversion-value"] = value
    return postback


def skan4(window: int = 0, *, fine: int | None = None, coarse: str | None = None, **extra: Any) -> dict[str, Any]:
    postback: dict[str, Any] = {
        "version": "4.0",
        "ad-network-id": "example123.skadnetwork",
        "source-identifier": "5239",
        "app-id": 525463029,
        "transaction-id": "tx-4",
        "redownload": False,
        "fidelity-type": 1,
        "did-win": True,
        "postback-sequence-index": window,
        **extra,
    }
    if fine is not None:
        postback["conversion-value"] = fine
    if coarse is not None:
        postback["coarse-conversion-value"] = coarse
    return postback


def events(records: list[DecodedRecord]) -> list[DecodedRecord]:
    return [r for r in records if r.kind == "event"]


def names(records: list[DecodedRecord]) -> list[str | None]:
    return [r.event_name for r in events(records)]


# ------------------------------------------------------------------------------------------ schemas


def test_issue_schema_examples_parse() -> None:
    revenue = parse_schema(REVENUE)
    assert revenue == ConversionSchema(
        schema_id="s1",
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        mode="revenue",
        signature_policy="enforce",
        event_name="af_skad_revenue",
        currency="USD",
        unit=1.0,
    )
    conversion = parse_schema(CONVERSION)
    assert conversion.events == tuple(SIX_EVENTS)
    assert parse_schema(ENGAGEMENT).event_name == "af_skad_revenue"
    table = parse_schema(TABLE)
    assert table.fine[7] == (TableRow("purchase", 1, 1, 6.0, 7.0, "USD", 0.0, 24.0),)
    assert table.coarse[2]["low"] == ()
    assert [r.event_name for r in table.coarse[0]["high"]] == ["w0_high", "w0_high_b"]


def test_schema_from_json_text_and_defaults() -> None:
    schema = parse_schema(
        b'{"schema_id": "x", "valid_from": "2021-06-01T02:00:00+02:00", "mode": "engagement", "event_name": "e"}'
    )
    assert schema.signature_policy == "enforce"
    assert schema.currency == "USD"
    assert schema.valid_from == datetime(2021, 6, 1, 0, 0, tzinfo=UTC)
    assert schema.valid_from.tzinfo is UTC
    nulls = parse_schema({**REVENUE, "signature_policy": None, "currency": None, "unit": None, "coarse": None})
    assert (nulls.signature_policy, nulls.currency, nulls.unit, nulls.coarse) == ("enforce", "USD", 1.0, {})


@pytest.mark.parametrize("source", [REVENUE, CONVERSION, ENGAGEMENT, TABLE])
def test_schema_round_trips_through_as_dict(source: dict[str, Any]) -> None:
    schema = parse_schema(source)
    assert parse_schema(schema.as_dict()) == schema
    assert copy.deepcopy(schema) == schema
    assert dataclasses.asdict(schema)["schema_id"] == source["schema_id"]


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({**REVENUE, "schema_id": None}, "schema_id"),
        ({**REVENUE, "schema_id": " "}, "schema_id"),
        ({k: v for k, v in REVENUE.items() if k != "valid_from"}, "valid_from"),
        ({**REVENUE, "valid_from": "2020-01-01"}, "valid_from"),
        ({**REVENUE, "valid_from": "2020-01-01T00:00:00"}, "valid_from"),  # no offset
        ({**REVENUE, "valid_from": "2020-02-30T00:00:00Z"}, "valid_from"),
        ({**REVENUE, "valid_from": 1577836800}, "valid_from"),
        ({**REVENUE, "signature_policy": "maybe"}, "signature_policy"),
        ({**REVENUE, "mode": "magic"}, "mode"),
        ({k: v for k, v in REVENUE.items() if k != "mode"}, "mode"),
        ({**REVENUE, "evnt_name": "x"}, "evnt_name"),
        ({**REVENUE, "events": SIX_EVENTS}, "events"),  # another mode's field
        ({**REVENUE, "event_name": ""}, "event_name"),
        ({**REVENUE, "unit": 0}, "unit"),
        ({**REVENUE, "unit": "1"}, "unit"),
        ({**REVENUE, "currency": "usd"}, "currency"),
        ({**ENGAGEMENT, "event_name": None}, "event_name"),
        ({**CONVERSION, "events": []}, "events"),
        ({**CONVERSION, "events": [*SIX_EVENTS, "seventh"]}, "events"),
        ({**CONVERSION, "events": ["a", 3]}, "events[1]"),
        ({**TABLE, "fine": None, "coarse": None}, "fine"),
        ({**TABLE, "fine": {"64": [PURCHASE_7]}}, "fine.64"),
        ({**TABLE, "fine": {"07": [PURCHASE_7]}}, "fine.07"),
        ({**TABLE, "fine": {"7": PURCHASE_7}}, "fine.7"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "max_count": 0}]}}, "fine.7[0].max_count"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "min_count": 2, "max_count": 1}]}}, "fine.7[0].max_count"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "max_revenue": 5.0}]}}, "fine.7[0].max_revenue"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "max_revenue": None}]}}, "fine.7[0].max_revenue"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "min_hours": None}]}}, "fine.7[0].min_hours"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "min_revenue": -1}]}}, "fine.7[0].min_revenue"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "event_name": 5}]}}, "fine.7[0].event_name"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "extra": 1}]}}, "fine.7[0].extra"),
        ({**TABLE, "fine": {"7": [{**PURCHASE_7, "currency": "dollars"}]}}, "fine.7[0].currency"),
        ({**TABLE, "coarse": {"3": {"low": []}}}, "coarse.3"),
        ({**TABLE, "coarse": {"0": {"huge": []}}}, "coarse.0.huge"),
        ({**TABLE, "coarse": {"0": []}}, "coarse.0"),
        ({**TABLE, "coarse": {"1": {"low": [{"min_count": 1}]}}}, "coarse.1.low[0].event_name"),
    ],
)
def test_schema_errors_name_the_field(schema: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_schema(schema)
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}: ")
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("text", [b"", b"{", b"[]", "null"])
def test_schema_body_errors(text: bytes | str) -> None:
    with pytest.raises(InputError) as exc:
        parse_schema(text)
    assert exc.value.field == "body"


def test_coarse_is_accepted_in_any_mode() -> None:
    schema = parse_schema({**REVENUE, "coarse": {"1": {"high": [row("buyer")]}}})
    assert names(decode(skan4(1, coarse="high"), schema)) == ["buyer"]


# --------------------------------------------------------------------------------- schema in force


def test_schema_in_force_is_the_latest_valid_from_not_after_install() -> None:
    old = parse_schema({**REVENUE, "schema_id": "old", "valid_from": "2020-01-01T00:00:00Z"})
    new = parse_schema({**REVENUE, "schema_id": "new", "valid_from": "2021-06-01T00:00:00Z"})
    for schemas in ([old, new], [new, old]):
        assert schema_in_force(schemas, datetime(2021, 5, 31, 23, 59, 59, tzinfo=UTC)) is old
        assert schema_in_force(schemas, datetime(2021, 6, 1, tzinfo=UTC)) is new
        assert schema_in_force(schemas, datetime(2019, 12, 31, tzinfo=UTC)) is None
    assert schema_in_force([], RECEIVED) is None


def test_schema_in_force_tie_goes_to_the_later_one() -> None:
    first = parse_schema({**REVENUE, "schema_id": "first"})
    second = parse_schema({**REVENUE, "schema_id": "second"})
    assert schema_in_force([first, second], RECEIVED) is second


def test_schema_choice_by_estimated_install_time() -> None:
    old = parse_schema({**REVENUE, "schema_id": "old"})
    new = parse_schema({**CONVERSION, "schema_id": "new", "valid_from": "2021-06-01T00:00:00Z"})
    arrival = datetime(2021, 6, 3, 12, 0, tzinfo=UTC)  # - 48 h - 12 h = 2021-06-01T00:00Z exactly
    received = arrival + timedelta(hours=3)
    at_boundary = skan3(63, timestamp=str(int(arrival.timestamp())))
    before = skan3(63, timestamp=str(int(arrival.timestamp()) - 1))
    assert estimated_install_time(at_boundary, received) == datetime(2021, 6, 1, tzinfo=UTC)

    chosen = schema_in_force([old, new], estimated_install_time(at_boundary, received))
    assert chosen is new
    assert len(events(decode(at_boundary, chosen))) == 6  # bitmask: six events

    chosen = schema_in_force([old, new], estimated_install_time(before, received))
    assert chosen is old
    [event] = events(decode(before, chosen))
    assert (event.event_name, event.revenue, event.schema_id) == ("af_skad_revenue", 63.0, "old")


# ------------------------------------------------------------------------------------- install time


def test_install_time_skan3_is_arrival_minus_48h_minus_average_hours() -> None:
    assert estimated_install_time(skan3(1), RECEIVED) == RECEIVED - timedelta(hours=48 + 12)
    assert estimated_install_time(skan3(1), RECEIVED, hours_post_install=(0, 24)) == RECEIVED - timedelta(hours=60)
    assert estimated_install_time(skan3(1), RECEIVED, hours_post_install=(24, 48)) == RECEIVED - timedelta(hours=84)
    no_version = {k: v for k, v in skan3(1).items() if k != "version"}
    assert estimated_install_time(no_version, RECEIVED) == RECEIVED - timedelta(hours=60)


@pytest.mark.parametrize(("window", "hours"), [(0, 84), (1, 252), (2, 924)])
def test_install_time_skan4_uses_the_window_typical_delay(window: int, hours: int) -> None:
    postback = skan4(window, coarse="low")
    assert estimated_install_time(postback, RECEIVED) == RECEIVED - timedelta(hours=hours)
    # The postback waits for the window's end: a table's hours do not move it.
    assert estimated_install_time(postback, RECEIVED, hours_post_install=(0, 1)) == RECEIVED - timedelta(hours=hours)


def test_install_time_needs_an_aware_receipt_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        estimated_install_time(skan3(1), RECEIVED.replace(tzinfo=None))


def test_install_time_prefers_the_network_timestamp() -> None:
    sent = RECEIVED - timedelta(hours=5)
    for stamp in (str(int(sent.timestamp())), int(sent.timestamp()) * 1000, str(int(sent.timestamp() * 1000))):
        postback = skan3(1, timestamp=stamp)
        assert estimated_install_time(postback, RECEIVED) == sent - timedelta(hours=60)


@pytest.mark.parametrize(
    "stamp", ["", "abc", "1596", str(int((RECEIVED + timedelta(days=2)).timestamp())), "0000000001"]
)
def test_install_time_ignores_an_unusable_timestamp(stamp: str) -> None:
    assert estimated_install_time(skan3(1, timestamp=stamp), RECEIVED) == RECEIVED - timedelta(hours=60)


# ------------------------------------------------------------------------------------------ decoding


def test_revenue_7_is_one_seven_dollar_event() -> None:
    records = decode(skan3(7), parse_schema(REVENUE))
    assert [r.kind for r in records] == ["install", "event"]
    event = records[1]
    assert event == DecodedRecord(
        kind="event",
        event_name="af_skad_revenue",
        count=1,
        min_count=1,
        max_count=1,
        revenue=7.0,
        min_revenue=7.0,
        max_revenue=7.0,
        currency="USD",
        min_hours=None,
        max_hours=None,
        schema_id="s1",
        conversion_value=7,
        coarse_conversion_value=None,
        postback_sequence_index=0,
        value_unknown=False,
    )
    assert event.attribution_source == ATTRIBUTION_SOURCE == "skadnetwork"


def test_revenue_unit_is_exact() -> None:
    [event] = events(decode(skan3(3), parse_schema({**REVENUE, "unit": 0.1, "currency": "EUR"})))
    assert (event.revenue, event.min_revenue, event.max_revenue, event.currency) == (0.3, 0.3, 0.3, "EUR")


def test_conversion_63_is_all_six_events_once() -> None:
    records = decode(skan3(63), parse_schema(CONVERSION))
    assert records[0].kind == "install"
    assert names(records) == SIX_EVENTS
    assert all((r.count, r.min_count, r.max_count, r.revenue) == (1, 1, 1, None) for r in events(records))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, ["af_level_complete"]),
        (2, ["af_login"]),
        (5, ["af_level_complete", "af_skad_revenue"]),
        (32, ["af_custom_event"]),
        (0, []),
    ],
)
def test_conversion_bits_least_significant_first(value: int, expected: list[str]) -> None:
    assert names(decode(skan3(value), parse_schema(CONVERSION))) == expected


def test_conversion_bits_without_an_event_are_ignored() -> None:
    schema = parse_schema({**CONVERSION, "events": ["a", "b"]})
    assert names(decode(skan3(0b111), schema)) == ["a", "b"]


def test_engagement_3_is_three_occurrences() -> None:
    records = decode(skan3(3), parse_schema(ENGAGEMENT))
    [event] = events(records)
    assert (event.event_name, event.count, event.min_count, event.max_count) == ("af_skad_revenue", 3, 3, 3)
    sent = occurrences(records)
    assert [r.kind for r in sent] == ["install", "event", "event", "event"]


def test_table_rows() -> None:
    schema = parse_schema(TABLE)
    [purchase] = events(decode(skan3(7), schema))
    assert (purchase.event_name, purchase.count, purchase.revenue, purchase.currency) == ("purchase", 1, 6.5, "USD")
    assert (purchase.min_revenue, purchase.max_revenue, purchase.min_hours, purchase.max_hours) == (6.0, 7.0, 0, 24)
    assert purchase.schema_id == "t1"
    # The guide's examples: min 0 max 10 -> 5 events; min 0 max 1 -> 1 event.
    level, login = events(decode(skan3(9), schema))
    assert (level.count, level.min_count, level.max_count) == (5, 0, 10)
    assert (login.count, login.min_count, login.max_count) == (1, 0, 1)
    assert level.revenue is None and level.currency is None
    [tip] = events(decode(skan3(12), schema))
    assert (tip.revenue, tip.currency) == (pytest.approx(0.15), "EUR")
    # A value the table does not map: the install only, not unknown.
    records = decode(skan3(8), schema)
    assert [r.kind for r in records] == ["install"]
    assert records[0].value_unknown is False
    assert records[0].conversion_value == 8


@pytest.mark.parametrize(
    ("window", "level", "expected"),
    [
        (0, "low", ["w0_low"]),
        (0, "medium", ["w0_medium"]),
        (0, "high", ["w0_high", "w0_high_b"]),
        (1, "low", ["w1_low"]),
        (1, "medium", ["w1_medium"]),
        (1, "high", ["w1_high"]),
        (2, "low", []),
        (2, "medium", ["w2_medium"]),
        (2, "high", ["w2_high"]),
    ],
)
def test_coarse_values_per_window(window: int, level: str, expected: list[str]) -> None:
    records = decode(skan4(window, coarse=level), parse_schema(TABLE))
    assert names(records) == expected
    # Window 0 is the install; windows 1 and 2 report on the same install and never count it again.
    assert [r.kind for r in records if r.kind != "event"] == (["install"] if window == 0 else [])
    assert all(r.coarse_conversion_value == level for r in records)
    assert all(r.postback_sequence_index == window for r in records)
    assert all(r.conversion_value is None and r.value_unknown is False for r in records)


def test_coarse_rows_keep_their_hours() -> None:
    [event] = events(decode(skan4(2, coarse="high"), parse_schema(TABLE)))
    assert (event.min_hours, event.max_hours) == (168, 840)


def test_skan4_fine_value_in_window_0() -> None:
    records = decode(skan4(0, fine=63), parse_schema(CONVERSION))
    assert names(records) == SIX_EVENTS
    assert records[0].conversion_value == 63


def test_fine_value_wins_over_coarse_in_window_0() -> None:
    records = decode(skan4(0, fine=7, coarse="low"), parse_schema(TABLE))
    assert names(records) == ["purchase"]
    assert records[0].coarse_conversion_value == "low"  # kept raw


def test_windows_1_and_2_only_have_coarse_values() -> None:
    schema = parse_schema(TABLE)
    assert names(decode(skan4(1, fine=7, coarse="low"), schema)) == ["w1_low"]
    assert decode(skan4(1, fine=7), schema) == []


def test_coarse_value_without_a_mapping_is_install_only() -> None:
    records = decode(skan4(0, coarse="high"), parse_schema(REVENUE))
    assert [r.kind for r in records] == ["install"]
    assert records[0].value_unknown is False


@pytest.mark.parametrize("how", ["absent", "null"])
def test_null_value_is_unknown_not_zero(how: str) -> None:
    postback = skan3()
    if how == "null":
        postback["conversion-value"] = None
    for schema in (parse_schema(REVENUE), parse_schema(CONVERSION), None):
        [install] = decode(postback, schema)
        assert install.kind == "install"
        assert install.value_unknown is True
        assert install.conversion_value is None


def test_zero_is_an_install_without_events() -> None:
    for schema in (parse_schema(REVENUE), parse_schema(CONVERSION), parse_schema(ENGAGEMENT), parse_schema(TABLE)):
        [install] = decode(skan3(0), schema)
        assert install.kind == "install"
        assert install.value_unknown is False
        assert install.conversion_value == 0


def test_skan4_without_any_value_is_unknown() -> None:
    [install] = decode(skan4(0), parse_schema(TABLE))
    assert install.value_unknown is True
    assert decode(skan4(1), parse_schema(TABLE)) == []


@pytest.mark.parametrize("flag", [True, "true"])
def test_redownload_is_the_install_record(flag: object) -> None:
    records = decode(skan3(7, redownload=flag), parse_schema(REVENUE))
    assert [r.kind for r in records] == ["redownload", "event"]


def test_install_record_fields() -> None:
    [install, _] = decode(skan3(7), parse_schema(REVENUE))
    assert (install.event_name, install.count, install.min_count, install.revenue, install.currency) == (
        None,
        1,
        None,
        None,
        None,
    )
    assert (install.schema_id, install.conversion_value, install.attribution_source) == ("s1", 7, "skadnetwork")


@pytest.mark.parametrize(
    "postback",
    [
        skan3(63, **{"did-win": False}),
        {**skan4(0, fine=63), "did-win": False},
        skan3(63, **{"did-win": "false"}),
        skan3(63, version="5.1", **{"did-win": False}),
    ],
)
def test_non_winning_postbacks_are_not_installs(postback: dict[str, Any]) -> None:
    assert not is_winning(postback)
    assert decode(postback, parse_schema(CONVERSION)) == []


def test_did_win_means_nothing_before_3_0() -> None:
    postback = {**skan3(63), "version": "2.2", "did-win": False}
    assert is_winning(postback)
    assert names(decode(postback, parse_schema(CONVERSION))) == SIX_EVENTS
    assert is_winning({k: v for k, v in skan3(1).items() if k != "did-win"})


def test_no_schema_keeps_the_raw_value_for_later() -> None:
    [install] = decode(skan3(7), None)
    assert (install.schema_id, install.conversion_value, install.value_unknown) == (None, 7, False)
    assert decode(skan4(1, coarse="high"), None) == []


def test_decode_is_pure() -> None:
    postback = skan3(63)
    before = copy.deepcopy(postback)
    assert decode(postback, parse_schema(CONVERSION)) == decode(postback, parse_schema(CONVERSION))
    assert postback == before


@pytest.mark.parametrize(
    "postback",
    [{"jws-string": "a.b.c"}, skan3(64), skan3(-1), {**skan3(), "conversion-value": "7"}, skan4(0, coarse="huge")],
)
def test_decode_rejects_what_parse_postback_rejects(postback: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        decode(postback, parse_schema(TABLE))


def test_occurrences_expand_event_counts_only() -> None:
    records = decode(skan3(9), parse_schema(TABLE))  # level x5 (0-10), login x1 (0-1)
    assert [r.event_name for r in occurrences(records)] == [None, *["level"] * 5, "login"]


def test_simulated_test_app_schemas() -> None:
    assert set(SIMULATED_TEST_APP_SCHEMAS) == {"888707085", "888707086", "888707087"}
    assert all(s.signature_policy == "skip" for s in SIMULATED_TEST_APP_SCHEMAS.values())
    assert [s.mode for s in SIMULATED_TEST_APP_SCHEMAS.values()] == ["revenue", "conversion", "engagement"]


def test_derived_rows_are_shared_not_mutated() -> None:
    schema = parse_schema(CONVERSION)
    first, again = decode(skan3(63), schema), decode(skan3(63), schema)
    assert first == again and first[1] is not again[1]
    assert names(decode(skan3(63), dataclasses.replace(schema, events=("a", "b")))) == ["a", "b"]


def test_revenue_unit_type_does_not_leak_between_schemas() -> None:
    as_float = parse_schema({**REVENUE, "unit": 0.1})
    as_int = dataclasses.replace(as_float, unit=1)
    assert [r.revenue for r in events(decode(skan3(3), as_float))] == [0.3]
    assert [r.revenue for r in events(decode(skan3(3), as_int))] == [3.0]


def test_default_hours_are_the_explicit_first_day() -> None:
    for postback in (skan3(7), skan3(7, timestamp=str(int(RECEIVED.timestamp()) - 3600))):
        default = estimated_install_time(postback, RECEIVED)
        assert default == estimated_install_time(postback, RECEIVED, hours_post_install=(0.0, 24.0))
        assert default == estimated_install_time(postback, RECEIVED, hours_post_install=())  # type: ignore[arg-type]


def test_schema_built_with_an_event_list_still_decodes() -> None:
    schema = dataclasses.replace(parse_schema(CONVERSION), events=["a", "b"])  # type: ignore[arg-type]
    assert names(decode(skan3(3), schema)) == ["a", "b"]
