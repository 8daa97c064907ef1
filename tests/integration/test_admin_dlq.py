"""Dead letters through the admin service (`apprefer run admin`, alone: no gateway is needed) against the real
broker and PostgreSQL: pages read a bounded window per partition and `next` walks every letter exactly once, one
is shown in full, and a replay goes through the CLI's code (a dry run publishes nothing; a replay publishes once
and is recorded, so the next skips).

Dead letters are produced as the consumer runner makes them (shared/kafka/records.py dead_letter_of)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from confluent_kafka import KafkaError, Producer

from shared.avro import codec
from shared.db.migrate import upgrade
from shared.kafka.consumer import message_headers
from shared.kafka.records import InRecord, OutRecord, dead_letter_of, header
from shared.kafka.topics import create_topics
from tests.support.pipeline import AdminApi, service_env, start_admin
from tests.support.postgres import create_database
from tests.support.topic_reading import read_all

pytestmark = pytest.mark.timeout(120)

DLQ = "forward.meta.dlq"
HOUR_MS = 3_600_000


@dataclass
class Env:
    admin: AdminApi
    bootstrap: str

    def send(self, records: list[OutRecord]) -> None:
        """Produced and acknowledged, by a producer gone when this returns: a client still connected keeps the
        broker from stopping at once at the end of the module."""
        producer = Producer({"bootstrap.servers": self.bootstrap})
        errors: list[KafkaError] = []
        for record in records:
            producer.produce(record.topic, record.value, record.key, headers=record.headers,
                             on_delivery=lambda err, _msg: errors.append(err) if err else None)
        assert producer.flush(30) == 0 and not errors, errors

    def get(self, path: str, expect: int = 200) -> Any:
        return self.admin.call("GET", path, expect=expect)

    def post(self, path: str, body: Any, expect: int = 200) -> Any:
        return self.admin.call("POST", path, body, expect=expect)


@pytest.fixture(scope="module")
def env(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    database_url = create_database(postgres_server_url, f"admin_dlq_{uuid.uuid4().hex}")
    upgrade(database_url)
    create_topics(module_bootstrap, partitions=3, replication=1)
    admin_service, admin_base = start_admin(service_env(module_bootstrap, database_url),
                                            tmp_path_factory.mktemp("admin-dlq"))
    try:
        yield Env(AdminApi(admin_base), module_bootstrap)
    finally:
        admin_service.terminate()


def forward_job(app_id: str, event_id: str) -> InRecord:
    job = {"job_id": f"{event_id}:meta", "app_id": app_id, "network": "meta", "event_id": event_id,
           "event_name": "purchase", "network_event_name": "Purchase", "event_time_ms": int(time.time() * 1000),
           "device": {"device_id": f"d-{event_id}"}, "attempt": 3, "first_attempt_ms": 1}
    value = codec().encode("apprefer.ForwardJob", job)
    return InRecord(topic="forward.meta", partition=0, offset=0, key=f"{app_id}:{event_id}".encode(),
                    raw_value=value, headers=[("trace", b"t-1")], schema="apprefer.ForwardJob",
                    value=codec().decode(value)[1])


def dead_letters(env: Env, app_id: str, count: int, error: str = "HTTP 400 (code 190): invalid token",
                 failed_at_ms: int | None = None) -> list[str]:
    """`count` forwarding jobs of the app dead-lettered as the forwarder's runner does; their event ids."""
    event_ids = [f"{app_id}-ev-{n}" for n in range(count)]
    letters: list[OutRecord] = []
    for event_id in event_ids:
        letter = dead_letter_of(forward_job(app_id, event_id), error, "forwarder-meta")
        if failed_at_ms is not None:
            letter.headers = [(k, v) for k, v in letter.headers if k != "dlq.failed_at_ms"]
            letter.headers.append(("dlq.failed_at_ms", str(failed_at_ms).encode()))
        letters.append(letter)
    env.send(letters)
    return event_ids


def positions_on(env: Env, topic: str) -> set[str]:
    return {f"{topic}:{m.partition()}:{m.offset()}" for m in read_all(env.bootstrap, topic)}


def walk(env: Env, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every page of GET /dlq with these parameters, `next` followed until null: the letters and the page count."""
    seen: list[dict[str, Any]] = []
    pages, cursor = 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = env.get(f"/dlq?{urlencode(query)}")
        pages += 1
        assert pages < 200, "paging does not end"
        seen += page["dead_letters"]
        cursor = page["next"]
        if cursor is None:
            return seen, pages


def new_app() -> str:
    return f"app_{uuid.uuid4().hex[:12]}"


def test_pages_of_a_small_window_walk_every_dead_letter_once(env: Env) -> None:
    app_a, app_b = new_app(), new_app()
    dead_letters(env, app_a, 9)
    dead_letters(env, app_b, 4, error="HTTP 500: upstream")
    every = positions_on(env, DLQ)
    assert len(every) >= 13

    for limit in (3, 1000):  # cut by limit, and by window only
        seen, pages = walk(env, network="meta", window=2, limit=limit)
        positions = [letter["position"] for letter in seen]
        assert len(positions) == len(set(positions)) and set(positions) == every, (limit, pages)
        assert pages >= len(every) / 6  # two records a partition, three partitions: a bounded read per page

    mine, _ = walk(env, network="meta", app_id=app_a, window=2, limit=2)
    assert sorted(letter["event_id"] for letter in mine) == sorted(f"{app_a}-ev-{n}" for n in range(9))
    assert {letter["app_id"] for letter in mine} == {app_a} and mine[0]["network"] == "meta"
    assert mine[0]["error"].startswith("HTTP 400") and mine[0]["source_topic"] == "forward.meta"
    upstream, _ = walk(env, network="meta", error="upstream", window=5)
    assert {letter["app_id"] for letter in upstream} == {app_b} and len(upstream) == 4

    # Every DLQ topic when no network is named: a raw record on events.raw.dlq too.
    env.send([OutRecord(topic="events.raw.dlq", value=b"not avro", headers=[
        ("dlq.error", b"DecodeError: bad magic"), ("dlq.source_topic", b"events.raw")])])
    everywhere, _ = walk(env, window=3, limit=4)
    positions = [letter["position"] for letter in everywhere]
    assert len(positions) == len(set(positions))
    assert set(positions) == positions_on(env, DLQ) | positions_on(env, "events.raw.dlq")
    assert walk(env, topic="events.raw")[0][0]["error"] == "DecodeError: bad magic"

    # One page holds at most `limit`; the first page of a window big enough is everything, newest first.
    first = env.get("/dlq?network=meta&limit=2&window=1000")
    assert len(first["dead_letters"]) == 2 and first["next"] is not None
    whole = env.get("/dlq?network=meta&limit=1000&window=1000")
    assert whole["next"] is None and len(whole["dead_letters"]) == len(positions_on(env, DLQ))
    failed = [letter["failed_at_ms"] for letter in whole["dead_letters"]]
    assert failed == sorted(failed, reverse=True)


def test_the_time_filters_and_bad_parameters(env: Env) -> None:
    app = new_app()
    now_ms = int(time.time() * 1000)
    old = dead_letters(env, app, 2, failed_at_ms=now_ms - 5 * HOUR_MS)
    recent = dead_letters(env, app, 3, failed_at_ms=now_ms - HOUR_MS // 2)

    def event_ids(**params: Any) -> list[str]:
        return sorted(letter["event_id"] for letter in walk(env, network="meta", app_id=app, window=4, **params)[0])

    assert event_ids(since="2h") == sorted(recent)
    assert event_ids(until=now_ms - 2 * HOUR_MS) == sorted(old)
    assert event_ids(since=now_ms - 6 * HOUR_MS, until="yesterday") == []  # until before since: none
    assert event_ids() == sorted(old + recent)

    for query, field in (("network=myspace", "network"), ("since=yesterdy", "since"), ("until=x", "until"),
                         ("limit=x", "limit"), ("window=1.5", "window"), ("cursor=bm90LWEtY3Vyc29y", "cursor"),
                         ("cursor=%25%25", "cursor"), ("network=meta&topic=events.raw", "topic")):
        answer = env.get(f"/dlq?{query}", expect=400)
        assert answer["field"] == field, (query, answer)
    # A cursor is for the topics it was made for.
    cursor = env.get("/dlq?network=meta&window=1&limit=1")["next"]
    assert env.get(f"/dlq?network=tiktok&cursor={quote(cursor)}", expect=400)["field"] == "cursor"
    assert env.get("/dlq?network=tiktok") == {"dead_letters": [], "next": None}


def test_one_dead_letter_in_full(env: Env) -> None:
    app = new_app()
    [event_id] = dead_letters(env, app, 1, error="HTTP 400 (code 190): token\texpired")
    [letter] = walk(env, network="meta", app_id=app)[0]
    topic, partition, offset = letter["position"].rsplit(":", 2)
    shown = env.get(f"/dlq/{topic}/{partition}/{offset}")
    assert shown["position"] == letter["position"] and shown["event_id"] == event_id
    assert shown["schema"] == "apprefer.ForwardJob" and shown["record"]["app_id"] == app
    assert shown["record"]["attempt"] == 3
    assert shown["error"] == "HTTP 400 (code 190): token\texpired" == shown["headers"]["dlq.error"]
    assert shown["headers"]["trace"] == "t-1" and shown["headers"]["dlq.service"] == "forwarder-meta"
    assert "value_hex" not in shown

    raw = walk(env, topic="events.raw.dlq")[0]
    if raw:  # the raw record of the paging test: its bytes, in hex
        t, p, o = raw[0]["position"].rsplit(":", 2)
        assert env.get(f"/dlq/{t}/{p}/{o}")["value_hex"] == b"not avro".hex()

    assert env.get(f"/dlq/{topic}/{partition}/99999999", expect=404)["error"] == "not_found"
    assert env.get(f"/dlq/{topic}/7/0", expect=404)["error"] == "not_found"  # no such partition
    assert env.get("/dlq/nope.dlq/0/0", expect=404)["error"] == "not_found"  # no such topic
    assert env.get(f"/dlq/{topic}/x/0", expect=400)["field"] == "partition"
    assert env.get(f"/dlq/{topic}/0/-1", expect=400)["field"] == "offset"
    assert env.get("/dlq/events.raw/0/0", expect=400)["field"] == "topic"  # not a dead-letter topic


def replayed_on_forward_meta(env: Env, app_id: str) -> list[dict[str, Any]]:
    """The records of the app that replays put back on forward.meta, with their replay.from."""
    found = []
    for message in read_all(env.bootstrap, "forward.meta"):
        _, record = codec().decode(message.value())
        if record["app_id"] == app_id:
            replay_from = header(message_headers(message), "replay.from") or b""
            found.append({**record, "replay_from": replay_from.decode()})
    return found


def test_replay_dry_run_then_once_then_skipped(env: Env) -> None:
    app, other = new_app(), new_app()
    event_ids = dead_letters(env, app, 4)
    dead_letters(env, other, 2)
    positions = {letter["position"] for letter in walk(env, network="meta", app_id=app)[0]}

    dry = env.post("/dlq/replay", {"network": "meta", "app_id": app, "dry_run": True})
    assert dry["dry_run"] is True and dry["count"] == 4 == dry["matched"] and dry["skipped"] == 0
    assert set(dry["positions"]) == positions
    assert replayed_on_forward_meta(env, app) == []  # a dry run publishes nothing

    done = env.post("/dlq/replay", {"network": "meta", "app_id": app})
    assert done["dry_run"] is False and done["count"] == 4 and set(done["positions"]) == positions
    replayed = replayed_on_forward_meta(env, app)
    assert sorted(r["event_id"] for r in replayed) == sorted(event_ids)
    assert {r["replay_from"] for r in replayed} == positions
    assert {r["attempt"] for r in replayed} == {0}  # a fresh retry budget
    assert replayed_on_forward_meta(env, other) == []

    again = env.post("/dlq/replay", {"network": "meta", "app_id": app})
    assert (again["count"], again["skipped"], again["matched"], again["positions"]) == (0, 4, 4, [])
    assert len(replayed_on_forward_meta(env, app)) == 4  # not published twice
    forced = env.post("/dlq/replay", {"network": "meta", "app_id": app, "force": True, "dry_run": True})
    assert (forced["count"], forced["skipped"]) == (4, 0)

    # The audit trail the CLI leaves: a `retrying` record per replayed letter, for the audit service.
    audits = [codec().decode(m.value())[1] for m in read_all(env.bootstrap, "audit.records")]
    assert sorted(a["event_id"] for a in audits if a["app_id"] == app and a["status"] == "retrying") == sorted(
        event_ids)

    for body, field in (({"network": "myspace"}, "network"), ({"since": "yesterdy"}, "since"),
                        ({"dry_run": "yes"}, "dry_run"), ({"limit": 3}, "limit"),
                        ({"network": "meta", "topic": "events.raw"}, "topic")):
        assert env.post("/dlq/replay", body, expect=400)["field"] == field, body
