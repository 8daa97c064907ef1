"""The attribution handler on its own: records in, records out, against a migrated PostgreSQL, no broker.

Records are built as the consumer loop builds them from Kafka messages (shared/kafka/consumer.py,
`ConsumerRunner._decode`): the gateway's own record builders make the value, the Avro codec encodes it
(`raw_value`) and decodes it again (`value`, every default filled in). The last test goes one step up, through
`ConsumerRunner.process_batch` with a stand-in consumer and producer (`through_the_loop`, also used by the
other handlers' tests), to show what becomes of a record the handler cannot process, or of a schema it does not
take, while the rest of its batch goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from confluent_kafka import TopicPartition
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import shared.kafka.consumer as consumer_module
from services.attribution.consumer import SERVICE, TOPICS, AttributionHandler
from services.gateway.click_input import click_record
from services.gateway.event_input import parse_events, raw_event_record
from shared.avro import codec
from shared.db.models import App, Click, Install, ReportStaleDay
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.consumer import ConsumerRunner, Handler
from shared.kafka.producer import SyncProducer
from shared.kafka.records import Headers, InRecord, OutRecord, header
from shared.kafka.topics import CLICKS_RAW, EVENTS_ATTRIBUTED, EVENTS_RAW
from shared.reports.figures import DAY_MS

pytestmark = pytest.mark.timeout(60)

APP = "app_attr"
NOW = int(time.time() * 1000)
CLICKED_AT = NOW - 3600_000  # an hour before the install: well inside the 7-day lookback
CLICK_IP, CLICK_UA = "203.0.113.7", "ClickBrowser/1.0"
DEVICE_IP, DEVICE_UA = "198.51.100.20", "AppSDK/2.0"  # not the click's: no fingerprint match by accident


@pytest.fixture
def sessions(migrated_pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_pg_url)
    factory = make_sessionmaker(engine)
    with factory.begin() as session:
        session.add(App(app_id=APP, name="Attribution app", platform="android", created_at_ms=NOW))
    yield factory
    engine.dispose()


class Feed:
    """InRecords as the consumer loop decodes them, at increasing offsets."""

    def __init__(self) -> None:
        self.offset = 0

    def record(self, topic: str, schema: str, value: dict[str, Any], key: bytes | None = None,
               headers: Headers | None = None) -> InRecord:
        self.offset += 1
        raw = codec().encode(schema, value)
        decoded_schema, decoded = codec().decode(raw)
        assert decoded_schema == schema
        return InRecord(topic=topic, partition=0, offset=self.offset, key=key, raw_value=raw,
                        headers=list(headers or []), schema=schema, value=decoded)

    def click(self, params: dict[str, str], *, network: str | None = None, campaign: str | None = None,
              at_ms: int = CLICKED_AT, ip: str = CLICK_IP) -> InRecord:
        value = click_record(params, app_id=APP, link_id=None, link_network=network, link_campaign=campaign,
                             ip=ip, user_agent=CLICK_UA, clicked_at_ms=at_ms)
        return self.record(CLICKS_RAW, "apprefer.Click", value, key=value["click_key"].encode())

    def event(self, event_id: str, device: dict[str, Any], *, name: str = "install",
              referrer: dict[str, str] | None = None, at_ms: int = NOW - 1000,
              headers: Headers | None = None) -> InRecord:
        body: dict[str, Any] = {"event_id": event_id, "event_name": name, "event_time": at_ms,
                                "device": {"ip": DEVICE_IP, "user_agent": DEVICE_UA, **device}}
        if referrer:
            body["referrer"] = referrer
        (event,), _ = parse_events(body, 1)
        value = raw_event_record(event, app_id=APP, sandbox=False, received_at_ms=NOW, request_ip=None,
                                 request_user_agent=None, field="", max_revenue_amount=1e6)
        return self.record(EVENTS_RAW, "apprefer.RawEvent", value,
                           key=f"{APP}:{device['device_id']}".encode(), headers=headers)


def attributed(out: OutRecord) -> dict[str, Any]:
    assert out.topic == EVENTS_ATTRIBUTED, out.topic
    return codec().decode_as("apprefer.AttributedEvent", out.value)


def installs(sessions: sessionmaker[Session]) -> list[Install]:
    with sessions() as session:
        return list(session.scalars(select(Install).where(Install.app_id == APP).order_by(Install.device_id)))


def count(sessions: sessionmaker[Session], model: type[Click] | type[Install]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(model.app_id == APP)) or 0)


# --- attribution -----------------------------------------------------------------------------------------


# (click parameters, link network, link campaign, install device, install referrer, expected attribution)
Match = tuple[dict[str, str], str | None, str | None, dict[str, Any], dict[str, str] | None, dict[str, Any]]
MATCHES: dict[str, Match] = {
    "network click id": (
        {"fbclid": "IwAR-match"}, None, "spring", {"device_id": "dev-1", "os": "android"},
        {"fbclid": "IwAR-match"},
        {"matched_by": "click_id", "network": "meta", "campaign": "spring", "click_id_type": "fbclid",
         "click_id": "IwAR-match"}),
    "apprefer click key": (
        {"click_id": "partner-click-77"}, "applovin", "summer", {"device_id": "dev-2", "os": "android"},
        {"click_id": "partner-click-77"},
        {"matched_by": "click_id", "network": "applovin", "campaign": "summer", "click_id_type": None,
         "click_id": None}),
    "gaid": (
        {"gaid": "38400000-8cf0-11bd-b23e-10b96e40000d"}, "unity", "autumn",
        {"device_id": "dev-3", "os": "android", "gaid": "38400000-8CF0-11BD-B23E-10B96E40000D"}, None,
        {"matched_by": "device_id", "network": "unity", "campaign": "autumn", "click_id_type": None,
         "click_id": None}),
    "idfa": (
        {"idfa": "6d92078a-8246-4ba4-ae5b-76104861e7dc"}, "ironsource", "winter",
        {"device_id": "dev-4", "os": "ios", "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}, None,
        {"matched_by": "device_id", "network": "ironsource", "campaign": "winter", "click_id_type": None,
         "click_id": None}),
}


@pytest.mark.parametrize("case", list(MATCHES))
def test_an_install_is_attributed_to_the_stored_click_it_matches(sessions: sessionmaker[Session], case: str) -> None:
    params, network, campaign, device, referrer, expected = MATCHES[case]
    feed = Feed()
    click = feed.click(params, network=network, campaign=campaign)
    # A later click of another network with other ids: last touch must not pull the install to it.
    decoy = feed.click({"ttclid": "tt-decoy", "gaid": "11111111-2222-3333-4444-555555555555"},
                       at_ms=CLICKED_AT + 600_000, ip="192.0.2.99")
    assert AttributionHandler(sessions, codec())([click, decoy]) == []  # clicks are stored, never emitted
    assert count(sessions, Click) == 2

    # A fresh handler, as after a restart: the click can only come from the database.
    install = feed.event("install-1", device, referrer=referrer, headers=[("traceparent", b"00-abc-01")])
    (out,) = AttributionHandler(sessions, codec())([install])

    value = attributed(out)
    assert out.key == install.key and header(out.headers, "traceparent") == b"00-abc-01"
    assert out.origin is install
    assert value["event"] == install.value  # the event itself goes on unchanged (it has an os and ids)
    assert value["attribution"] == {
        "attributed": True, **expected, "click_key": click.value["click_key"], "click_time_ms": CLICKED_AT,
        "install_time_ms": NOW - 1000, "reinstall": False,
    }
    (row,) = installs(sessions)
    assert (row.device_id, row.event_id, row.attributed, row.matched_by, row.network, row.click_key) == (
        device["device_id"], "install-1", True, expected["matched_by"], expected["network"],
        click.value["click_key"])

    # Every later event of the device carries the install's attribution.
    purchase = feed.event("purchase-1", device, name="purchase", at_ms=NOW)
    (later,) = AttributionHandler(sessions, codec())([purchase])
    assert attributed(later)["attribution"] == value["attribution"]
    assert count(sessions, Install) == 1


def test_a_click_and_the_install_it_caused_in_one_batch_are_matched(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    click = feed.click({"gclid": "Cj0-same-batch"}, campaign="batch")
    install = feed.event("install-b", {"device_id": "dev-b", "os": "android"}, referrer={"gclid": "Cj0-same-batch"})
    # The install first in the batch: clicks are stored before any event is attributed.
    (out,) = AttributionHandler(sessions, codec())([install, click])
    attribution = attributed(out)["attribution"]
    assert (attribution["network"], attribution["matched_by"], attribution["click_key"]) == (
        "google_ads", "click_id", click.value["click_key"])


def test_an_install_matching_no_click_is_organic(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    handler = AttributionHandler(sessions, codec())
    assert handler([feed.click({"fbclid": "IwAR-someone-else", "gaid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"})]) == []
    install = feed.event("install-o", {"device_id": "dev-o", "os": "android",
                                       "gaid": "99999999-8888-7777-6666-555555555555"},
                         referrer={"install_referrer": "utm_source=google-play&utm_medium=organic"})
    purchase = feed.event("purchase-o", {"device_id": "dev-o", "os": "android"}, name="purchase", at_ms=NOW)
    stranger = feed.event("open-x", {"device_id": "dev-never-installed", "os": "android"}, name="open")
    outs = handler([install, purchase, stranger])

    organic = {"attributed": False, "matched_by": None, "network": None, "campaign": None, "click_id_type": None,
               "click_id": None, "click_key": None, "click_time_ms": None, "reinstall": False}
    assert [o.origin for o in outs] == [install, purchase, stranger]
    assert [attributed(o)["attribution"] for o in outs] == [
        {**organic, "install_time_ms": NOW - 1000},
        {**organic, "install_time_ms": NOW - 1000},  # the device's install, organic
        {**organic, "install_time_ms": None},  # no install known for this device: organic, no install time
    ]
    (row,) = installs(sessions)
    assert (row.device_id, row.attributed, row.matched_by, row.network) == ("dev-o", False, None, None)


def test_a_network_click_id_with_no_stored_click_still_names_its_network(sessions: sessionmaker[Session]) -> None:
    install = Feed().event("install-n", {"device_id": "dev-n", "os": "android"}, referrer={"ttclid": "E.C.P.lonely"})
    (out,) = AttributionHandler(sessions, codec())([install])
    attribution = attributed(out)["attribution"]
    assert attribution["attributed"] is True and attribution["click_key"] is None
    assert (attribution["network"], attribution["matched_by"], attribution["click_id_type"],
            attribution["click_id"]) == ("tiktok", "click_id", "ttclid", "E.C.P.lonely")


# --- idempotency --------------------------------------------------------------------------------------------


def test_a_replayed_batch_yields_the_same_attribution_and_no_second_row(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    click = feed.click({"fbclid": "IwAR-replay"}, campaign="replay")
    install = feed.event("install-r", {"device_id": "dev-r", "os": "android"}, referrer={"fbclid": "IwAR-replay"})
    first = AttributionHandler(sessions, codec())([click, install])
    # Meanwhile a later click the install would now match better (same click id, last touch): a replay
    # must re-emit what was decided, not decide again.
    late = feed.click({"fbclid": "IwAR-replay"}, campaign="late", at_ms=NOW - 1800_000)
    assert AttributionHandler(sessions, codec())([late]) == []
    # Redelivered after a crash, to a new process: the same records at the same offsets.
    again = AttributionHandler(sessions, codec())([click, install])
    # And the same event twice in one batch (a client retry the gateway could not tell apart).
    handler = AttributionHandler(sessions, codec())
    twice = handler([install, install])

    (original,) = [attributed(o) for o in first]
    assert original["attribution"]["attributed"] is True and original["attribution"]["network"] == "meta"
    assert original["attribution"]["click_key"] == click.value["click_key"]
    for out in [*again, *twice]:
        value = attributed(out)
        assert value["attribution"] == original["attribution"]
        assert value["event"] == original["event"]
    assert len(again) == 1 and len(twice) == 2
    assert count(sessions, Click) == 2 and count(sessions, Install) == 1
    (row,) = installs(sessions)
    assert (row.event_id, row.last_install_event_id, row.click_key) == ("install-r", "install-r",
                                                                         click.value["click_key"])

    # A different install event of the same device is not a replay: a reinstall, keeping the attribution.
    reinstall = feed.event("install-r2", {"device_id": "dev-r", "os": "android"}, at_ms=NOW - 500)
    (out,) = handler([reinstall])
    assert attributed(out)["attribution"] == {**original["attribution"], "reinstall": True}
    (row,) = installs(sessions)
    assert (row.event_id, row.last_install_event_id, row.network) == ("install-r", "install-r2", "meta")


# --- records it cannot process ---------------------------------------------------------------------------


def audit_value() -> dict[str, Any]:
    return {"audit_id": "a-1", "app_id": APP, "event_id": "e-1", "network": "meta", "status": "delivered",
            "recorded_at_ms": NOW}


def test_a_record_of_an_unexpected_schema_is_dead_lettered_by_the_loop_and_the_batch_goes_on(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = Feed()
    before = feed.event("install-1", {"device_id": "dev-1", "os": "android"})
    stray = feed.record(EVENTS_RAW, "apprefer.AuditRecord", audit_value(), key=b"stray", headers=[("trace", b"t")])
    after = feed.event("install-2", {"device_id": "dev-2", "os": "android"})
    outs, commits = through_the_loop(AttributionHandler(sessions, codec()), SERVICE, TOPICS,
                                     [before, stray, after], monkeypatch)  # does not raise

    (letter,) = [o for o in outs if o.topic == f"{EVENTS_RAW}.dlq"]
    assert letter.value == stray.raw_value and letter.key == b"stray"  # the original bytes, untouched
    assert header(letter.headers, "dlq.error") == b"unexpected schema apprefer.AuditRecord"
    assert header(letter.headers, "dlq.source_topic") == EVENTS_RAW.encode()
    assert header(letter.headers, "dlq.source_offset") == str(stray.offset).encode()
    assert header(letter.headers, "dlq.service") == SERVICE.encode()
    assert header(letter.headers, "trace") == b"t"  # the input's own headers are kept
    good = [attributed(o)["event"]["event_id"] for o in outs if o.topic == EVENTS_ATTRIBUTED]
    assert good == ["install-1", "install-2"]
    assert [r.device_id for r in installs(sessions)] == ["dev-1", "dev-2"]
    assert [[(tp.topic, tp.offset) for tp in commit] for commit in commits] == [[(EVENTS_RAW, after.offset + 1)]]


def malformed_revenuecat(feed: Feed) -> InRecord:
    """A RevenueCat event that decodes (valid Avro) but whose properties_json is not JSON: the handler
    cannot resolve its device."""
    value = {**feed.event("rc-1", {"device_id": "rc-app-user", "os": "ios"}, name="purchase").value,
             "source": "revenuecat", "properties_json": "{not json"}
    return feed.record(EVENTS_RAW, "apprefer.RawEvent", value, key=b"rc")


def test_a_malformed_value_fails_the_handlers_whole_batch_and_writes_nothing(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    click = feed.click({"fbclid": "IwAR-rolled-back"})
    install = feed.event("install-1", {"device_id": "dev-1", "os": "android"}, referrer={"fbclid": "IwAR-rolled-back"})
    with pytest.raises(ValueError):
        AttributionHandler(sessions, codec())([click, install, malformed_revenuecat(feed)])
    # One transaction per batch: nothing of it stays, so the loop can safely run the records one at a time.
    assert count(sessions, Click) == 0 and count(sessions, Install) == 0


class FakeMessage:
    """What the runner reads of a confluent_kafka.Message."""

    def __init__(self, topic: str, offset: int, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self._topic, self._offset, self._key, self._value, self._headers = topic, offset, key, value, headers

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 1, NOW

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers:
        return self._headers


class FakeConsumer:
    """Stands in for confluent_kafka.Consumer: no broker; remembers the commits."""

    def __init__(self) -> None:
        self.commits: list[list[TopicPartition]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(offsets)

    def assignment(self) -> list[TopicPartition]:
        return []

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return partitions

    def close(self) -> None:
        pass


class FakeProducer:
    """Stands in for SyncProducer: every output acknowledged."""

    def __init__(self) -> None:
        self.delivered: list[OutRecord] = []

    def deliver(self, records: list[OutRecord], stop: object = None) -> list[object]:
        self.delivered += records
        return []

    def health(self) -> None:
        pass

    def close(self) -> None:
        pass


def through_the_loop(handler: Handler, service: str, topics: Sequence[str], records: list[InRecord],
                     monkeypatch: pytest.MonkeyPatch) -> tuple[list[OutRecord], list[list[TopicPartition]]]:
    """The records as one polled batch through `ConsumerRunner.process_batch`, as `run_consumer` sets it up
    (the handler's SCHEMAS included): what it produced, and what it committed."""
    consumer, producer = FakeConsumer(), FakeProducer()
    monkeypatch.setattr(consumer_module, "Consumer", lambda config: consumer)
    runner = ConsumerRunner(service=service, consumer_config={}, topics=topics, handler=handler,
                            producer=cast(SyncProducer, producer), codec=codec())
    runner.process_batch(cast(list[Any], [FakeMessage(r.topic, r.offset, r.key, r.raw_value, r.headers)
                                          for r in records]))
    return producer.delivered, consumer.commits


def test_through_the_consumer_loop_bad_records_become_dead_letters_and_the_rest_get_outputs(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, producer = FakeConsumer(), FakeProducer()
    monkeypatch.setattr(consumer_module, "Consumer", lambda config: consumer)
    runner = ConsumerRunner(service=SERVICE, consumer_config={}, topics=TOPICS,
                            handler=AttributionHandler(sessions, codec()), producer=cast(SyncProducer, producer),
                            codec=codec())
    feed = Feed()
    click = feed.click({"fbclid": "IwAR-loop"}, campaign="loop")
    install = feed.event("install-1", {"device_id": "dev-1", "os": "android"}, referrer={"fbclid": "IwAR-loop"})
    malformed = malformed_revenuecat(feed)
    organic = feed.event("install-2", {"device_id": "dev-2", "os": "android"})
    batch = [FakeMessage(r.topic, r.offset, r.key, r.raw_value, r.headers) for r in (click, install, malformed)]
    batch.insert(2, FakeMessage(EVENTS_RAW, 90, b"garbage", b"\x00not avro at all", []))  # undecodable bytes
    batch.append(FakeMessage(organic.topic, organic.offset, organic.key, organic.raw_value, organic.headers))

    runner.process_batch(cast(list[Any], batch))  # no exception escapes

    by_topic: dict[str, list[OutRecord]] = {}
    for out in producer.delivered:
        by_topic.setdefault(out.topic, []).append(out)
    assert set(by_topic) == {EVENTS_ATTRIBUTED, f"{EVENTS_RAW}.dlq"}
    letters = {letter.key: letter for letter in by_topic[f"{EVENTS_RAW}.dlq"]}
    assert set(letters) == {b"garbage", b"rc"}
    assert letters[b"garbage"].value == b"\x00not avro at all"
    assert (header(letters[b"garbage"].headers, "dlq.error") or b"").startswith(b"DecodeError")
    assert letters[b"rc"].value == malformed.raw_value
    assert (header(letters[b"rc"].headers, "dlq.error") or b"").startswith(b"JSONDecodeError")
    assert header(letters[b"rc"].headers, "dlq.source_offset") == str(malformed.offset).encode()

    good = {attributed(o)["event"]["event_id"]: attributed(o)["attribution"] for o in by_topic[EVENTS_ATTRIBUTED]}
    assert set(good) == {"install-1", "install-2"}
    assert (good["install-1"]["network"], good["install-1"]["click_key"]) == ("meta", click.value["click_key"])
    assert good["install-2"]["attributed"] is False
    assert [r.device_id for r in installs(sessions)] == ["dev-1", "dev-2"]
    assert count(sessions, Click) == 1
    # Every message is checkpointed, the dead-lettered ones included.
    (commit,) = consumer.commits
    assert {(tp.topic, tp.offset) for tp in commit} == {(CLICKS_RAW, click.offset + 1), (EVENTS_RAW, 91)}


def test_an_install_dated_on_a_day_already_over_marks_it_for_the_reports_roller(
        sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    handler = AttributionHandler(sessions, codec())
    two_days_ago = NOW - 2 * DAY_MS
    handler([feed.event("install-today", {"device_id": "dev-today", "os": "android"}),
             feed.event("install-late", {"device_id": "dev-late", "os": "android"}, at_ms=two_days_ago)])
    with sessions() as session:
        marks = session.execute(select(ReportStaleDay.app_id, ReportStaleDay.day, ReportStaleDay.source)).all()
    assert [tuple(m) for m in marks] == [(APP, two_days_ago // DAY_MS, "installs")]  # the late one only
