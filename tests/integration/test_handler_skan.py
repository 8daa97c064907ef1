"""The SKAN decoder handler on its own: skan.raw records in, skan.decoded records out, against a migrated
PostgreSQL, no broker.

Postbacks are Apple's signed examples in tests/data/skan/ (see tests/data/README.md). Each record is built
as the gateway builds it (services/gateway/app.py: `parse_postback`, then an apprefer.SkanPostback with the
postback as JSON and the body as received) and decoded as the consumer loop decodes it.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.domain.skan.postback_input import parse_postback, transaction_key
from services.skan.consumer import SERVICE, TOPICS, SkanHandler
from shared.avro import codec
from shared.db.models import App, ReportStaleDay, SkanConversionSchema, SkanPostback
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.records import InRecord, OutRecord, header
from shared.kafka.topics import SKAN_DECODED, SKAN_RAW
from shared.reports.figures import DAY_MS
from tests.integration.test_handler_attribution import through_the_loop

pytestmark = pytest.mark.timeout(60)

TESTDATA = Path(__file__).resolve().parents[1] / "data" / "skan"
NOW = int(time.time() * 1000)
APP = "app_skan"


def example(name: str) -> dict[str, Any]:
    postback: dict[str, Any] = json.loads((TESTDATA / f"{name}.json").read_text())["postback"]
    return postback


SIGNED = example("apple_v3.0_winning")  # app 525463029, conversion value 20, redownload, signed (P-256)
VALID_EXAMPLES = sorted(p.stem for p in TESTDATA.glob("*.json") if json.loads(p.read_text())["expected_valid"])


@pytest.fixture
def sessions(migrated_pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_pg_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def add_app(sessions: sessionmaker[Session], apple_app_id: int | str, policy: str) -> None:
    """An iOS app with a revenue schema ($1 a conversion value step), as PUT /apps/{id}/skan/schema stores it."""
    body = {"schema_id": "s-revenue", "valid_from": "2018-01-01T00:00:00Z", "signature_policy": policy,
            "mode": "revenue", "event_name": "af_skad_revenue", "currency": "USD", "unit": 1.0}
    with sessions.begin() as session:
        session.add(App(app_id=APP, name="SKAN app", platform="ios", apple_app_id=str(apple_app_id),
                        created_at_ms=NOW))
        session.flush()
        session.add(SkanConversionSchema(app_id=APP, schema_id="s-revenue", valid_from_ms=1_514_764_800_000,
                                         body=body, updated_at_ms=NOW))


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def record(self, schema: str, value: dict[str, Any], key: bytes | None = None) -> InRecord:
        self.offset += 1
        raw = codec().encode(schema, value)
        decoded_schema, decoded = codec().decode(raw)
        assert decoded_schema == schema
        return InRecord(topic=SKAN_RAW, partition=0, offset=self.offset, key=key, raw_value=raw, headers=[],
                        schema=schema, value=decoded)

    def postback(self, body: dict[str, Any], source: str = "network", query: dict[str, str] | None = None,
                 received_at_ms: int = NOW) -> InRecord:
        raw_body = orjson.dumps(body)
        postback = parse_postback(raw_body, query or {})
        transaction_id, sequence_index = transaction_key(postback)
        value = {"transaction_id": transaction_id, "sequence_index": sequence_index, "source": source,
                 "postback_json": orjson.dumps(postback).decode(), "raw_body": raw_body.decode(),
                 "received_at_ms": received_at_ms}
        return self.record("apprefer.SkanPostback", value, key=transaction_id.encode())


def decoded(out: OutRecord) -> dict[str, Any]:
    assert out.topic == SKAN_DECODED, out.topic
    value = codec().decode_as("apprefer.SkanDecoded", out.value)
    value["postback"] = orjson.loads(value.pop("postback_json"))
    value["records"] = orjson.loads(value.pop("records_json"))
    return value


def stored(sessions: sessionmaker[Session]) -> list[SkanPostback]:
    with sessions() as session:
        return list(session.scalars(select(SkanPostback).order_by(SkanPostback.transaction_id)))


def test_a_signed_postback_is_verified_decoded_and_emitted(sessions: sessionmaker[Session]) -> None:
    add_app(sessions, SIGNED["app-id"], "enforce")
    record = Feed().postback(SIGNED, query={"ad-network-campaign-id": "777", "conversion-value": "1"})
    (out,) = SkanHandler(sessions, codec())([record])

    assert out.key == SIGNED["transaction-id"].encode()
    value = decoded(out)
    assert (value["app_id"], value["transaction_id"], value["sequence_index"], value["received_at_ms"]) == (
        APP, SIGNED["transaction-id"], 0, NOW)
    # The redirect's enrichment is kept; its conversion-value never overwrites Apple's field.
    assert value["postback"] == {**SIGNED, "ad-network-campaign-id": "777"}
    install, revenue = value["records"]
    assert (install["kind"], install["conversion_value"], install["schema_id"]) == ("redownload", 20, "s-revenue")
    assert (revenue["kind"], revenue["event_name"], revenue["revenue"], revenue["currency"]) == (
        "event", "af_skad_revenue", 20.0, "USD")

    (row,) = stored(sessions)
    assert (row.signature, row.reason, row.counted_as_install, row.did_win) == ("valid", None, True, True)
    assert (row.app_id, row.apple_app_id, row.conversion_value, row.value_source, row.sources) == (
        APP, str(SIGNED["app-id"]), 20, "network", "network")
    assert row.records == value["records"] and row.duplicates == 0
    assert row.raw_body == record.value["raw_body"]


@pytest.mark.parametrize("name", VALID_EXAMPLES)
def test_every_signed_example_verifies_and_becomes_an_install(sessions: sessionmaker[Session], name: str) -> None:
    postback = example(name)
    add_app(sessions, postback["app-id"], "enforce")
    (out,) = SkanHandler(sessions, codec())([Feed().postback(postback)])
    value = decoded(out)
    (row,) = stored(sessions)
    assert (row.signature, row.counted_as_install) == ("valid", True), row.reason
    assert value["postback"] == postback and value["records"] == row.records
    first = value["records"][0]
    assert first["kind"] == ("redownload" if postback.get("redownload") else "install")


FAILED = {
    "tampered": ({**SIGNED, "transaction-id": "11111111-2222-4333-8444-555555555555"}, "signature does not match"),
    "unsigned": ({k: v for k, v in SIGNED.items() if k != "attribution-signature"}, "missing attribution-signature"),
    "not DER": (example("whisk_bad_signature_not_DER"), "signature is not DER"),
}


@pytest.mark.parametrize("case", list(FAILED))
def test_under_enforce_a_postback_failing_verification_is_stored_as_invalid_and_not_emitted(
    sessions: sessionmaker[Session], case: str,
) -> None:
    postback, reason = FAILED[case]
    add_app(sessions, postback["app-id"], "enforce")
    assert SkanHandler(sessions, codec())([Feed().postback(postback)]) == []
    (row,) = stored(sessions)
    assert (row.transaction_id, row.signature, row.reason) == (postback["transaction-id"], "invalid", reason)
    assert (row.counted_as_install, row.records, row.app_id, row.did_win) == (False, [], APP, True)
    assert row.postback == postback  # kept whole, for the record


def test_under_record_a_tampered_postback_is_decoded_but_flagged(sessions: sessionmaker[Session]) -> None:
    postback, reason = FAILED["tampered"]
    add_app(sessions, postback["app-id"], "record")
    (out,) = SkanHandler(sessions, codec())([Feed().postback(postback)])
    assert decoded(out)["records"][0]["kind"] == "redownload"
    (row,) = stored(sessions)
    assert (row.signature, row.reason, row.counted_as_install) == ("invalid", reason, True)


def test_the_guides_seeded_test_app_skips_the_signature(sessions: sessionmaker[Session]) -> None:
    """App 888707085 is seeded by the migrations with a skip-policy revenue schema ($1 units)."""
    simulated = {"version": "3.0", "ad-network-id": "example123.skadnetwork", "campaign-id": 12,
                 "app-id": 888707085, "transaction-id": str(uuid.uuid4()), "redownload": False,
                 "source-app-id": 1234567891, "fidelity-type": 1, "did-win": True, "conversion-value": 7,
                 "attribution-signature": "MEUCIQDsimulatedtestappsignature==", "timestamp": "1596525944"}
    (out,) = SkanHandler(sessions, codec())([Feed().postback(simulated)])
    install, revenue = decoded(out)["records"]
    assert install["kind"] == "install" and (revenue["event_name"], revenue["revenue"]) == ("af_skad_revenue", 7.0)
    (row,) = stored(sessions)
    assert (row.app_id, row.signature, row.reason, row.counted_as_install) == (
        "app_skantest_888707085", "skipped", None, True)


def test_a_losing_postback_is_stored_and_not_an_install(sessions: sessionmaker[Session]) -> None:
    add_app(sessions, SIGNED["app-id"], "record")
    losing = {**SIGNED, "transaction-id": str(uuid.uuid4()), "did-win": False}
    assert SkanHandler(sessions, codec())([Feed().postback(losing)]) == []
    (row,) = stored(sessions)
    assert (row.did_win, row.counted_as_install, row.signature) == (False, False, "invalid")
    assert row.reason == "signature does not match; not the winning postback (did-win false)"


def test_a_postback_for_no_known_app_is_kept_as_a_summary(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    record = feed.postback(SIGNED)  # no app has 525463029 here
    handler = SkanHandler(sessions, codec())
    assert handler([record]) == []
    assert handler([feed.postback(SIGNED, source="apple")]) == []  # Apple's copy too: it stays a summary
    (row,) = stored(sessions)
    assert row.app_id is None and row.reason == f"no app with apple_app_id {SIGNED['app-id']}"
    assert row.postback == {k: SIGNED[k] for k in ("transaction-id", "app-id", "ad-network-id", "version")}
    assert (row.raw_body, row.conversion_value, row.records, row.counted_as_install) == ("", None, [], False)
    assert (row.duplicates, row.sources) == (1, "network,apple")


# --- idempotency --------------------------------------------------------------------------------------------


def test_a_replayed_postback_is_counted_as_a_duplicate_and_emits_nothing_more(sessions: sessionmaker[Session]) -> None:
    add_app(sessions, SIGNED["app-id"], "enforce")
    feed = Feed()
    record = feed.postback(SIGNED)
    (first,) = SkanHandler(sessions, codec())([record])
    # Redelivered to a new process, and the same copy twice more within one batch.
    assert SkanHandler(sessions, codec())([record]) == []
    assert SkanHandler(sessions, codec())([record, feed.postback(SIGNED)]) == []

    (row,) = stored(sessions)
    assert (row.duplicates, row.sources, row.value_source, row.signature) == (3, "network", "network", "valid")
    assert row.records == decoded(first)["records"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SkanPostback)) == 1


def test_apples_copy_with_another_value_wins_and_is_decoded_again(sessions: sessionmaker[Session]) -> None:
    add_app(sessions, SIGNED["app-id"], "enforce")
    feed = Feed()
    handler = SkanHandler(sessions, codec())
    (network_copy,) = handler([feed.postback(SIGNED)])
    apple_copy = copy.deepcopy(SIGNED) | {"conversion-value": 9}  # unsigned field: the signature still holds
    (again,) = handler([feed.postback(apple_copy, source="apple", received_at_ms=NOW + 5000)])
    value = decoded(again)
    assert value["postback"]["conversion-value"] == 9 and value["received_at_ms"] == NOW + 5000
    assert [r["revenue"] for r in value["records"]] == [None, 9.0]
    assert [r["revenue"] for r in decoded(network_copy)["records"]] == [None, 20.0]
    # Apple's copy once more: nothing changes, nothing is emitted.
    assert handler([feed.postback(apple_copy, source="apple")]) == []
    (row,) = stored(sessions)
    assert (row.conversion_value, row.value_source, row.sources, row.duplicates) == (9, "apple", "network,apple", 2)


# --- records it cannot process ---------------------------------------------------------------------------


def test_a_record_of_an_unexpected_schema_is_dead_lettered_by_the_loop_and_the_batch_goes_on(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_app(sessions, SIGNED["app-id"], "enforce")
    feed = Feed()
    stray = feed.record("apprefer.Click", {"click_key": "c-1", "app_id": APP, "clicked_at_ms": NOW}, key=b"c-1")
    outs, _ = through_the_loop(SkanHandler(sessions, codec()), SERVICE, TOPICS, [stray, feed.postback(SIGNED)],
                               monkeypatch)  # does not raise
    assert [o.topic for o in outs] == [f"{SKAN_RAW}.dlq", SKAN_DECODED]
    letter = outs[0]
    assert letter.value == stray.raw_value and letter.key == b"c-1"
    assert header(letter.headers, "dlq.error") == b"unexpected schema apprefer.Click"
    assert header(letter.headers, "dlq.source_offset") == str(stray.offset).encode()
    assert header(letter.headers, "dlq.service") == SERVICE.encode()
    assert [r.signature for r in stored(sessions)] == ["valid"]


def test_a_postback_received_on_a_day_already_over_marks_it_for_the_reports_roller(
        sessions: sessionmaker[Session]) -> None:
    add_app(sessions, SIGNED["app-id"], "enforce")
    yesterday = NOW - DAY_MS
    handler = SkanHandler(sessions, codec())
    handler([Feed().postback(SIGNED, received_at_ms=yesterday)])  # consumed after midnight
    handler([Feed().postback({**SIGNED, "transaction-id": str(uuid.uuid4())})])  # today's: no mark
    with sessions() as session:
        marks = [tuple(r) for r in session.execute(
            select(ReportStaleDay.app_id, ReportStaleDay.day, ReportStaleDay.source))]
    assert marks == [(APP, yesterday // DAY_MS, "skan_postbacks")]
