"""SKAN intake is bounded (real gateway, real broker, real PostgreSQL, the real skan decoder process).

The SKAN routes are unauthenticated by design, so: a body limit of their own (16 KB by default, whatever the
gateway's general limit), postbacks for an app id no app has rate-limited per source address (429 with
Retry-After) and stored by the decoder as a summary only, and every outcome counted on /metrics. Source
addresses are told apart by binding the client to 127.0.0.x (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.db.migrate import upgrade
from shared.db.models import SkanPostback
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.topics import create_topics
from tests.support.pipeline import AdminApi, ServiceProcess, http_call, service_env, start_edge, wait_until
from tests.support.postgres import create_database

SKAN_LIMIT = 16_384
UNKNOWN_APP_RATE = 5  # per minute and source: small, so the test reaches it quickly
ROUTES = ("/v1/skan/postbacks", "/.well-known/skadnetwork/report-attribution/")


@dataclass
class Intake:
    base: str
    admin: AdminApi
    database_url: str
    known_apple_app_id: str  # an app with a skip-policy revenue schema: its postbacks are installs
    port: int

    def post(self, raw: bytes, path: str = ROUTES[0], source: str = "127.0.0.1",
             chunked: bool = False) -> tuple[int, dict[str, str], Any]:
        """One POST from `source`; `chunked` sends no Content-Length (Transfer-Encoding: chunked)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(source, 0))
        try:
            if chunked:
                pieces = iter([raw[i:i + 8192] for i in range(0, len(raw), 8192)])
                connection.request("POST", path, body=pieces, encode_chunked=True)
            else:
                connection.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        headers = {k.lower(): v for k, v in response.getheaders()}
        is_json = headers.get("content-type", "").startswith("application/json")
        return response.status, headers, json.loads(data) if is_json else data

    def intake_counts(self) -> dict[str, float]:
        status, _, text = http_call("GET", f"{self.base}/metrics")
        assert status == 200
        return {outcome: float(value) for outcome, value in
                re.findall(r'^apprefer_skan_intake_total\{outcome="(\w+)"\} (\S+)$', text.decode(), re.M)}

    def rows(self, *transaction_ids: str) -> dict[str, SkanPostback]:
        engine = make_engine(self.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                found = session.scalars(select(SkanPostback).where(SkanPostback.transaction_id.in_(transaction_ids)))
                return {row.transaction_id: row for row in found}
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def intake(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Intake]:
    database_url = create_database(postgres_server_url, f"skan_intake_{uuid.uuid4().hex}")
    upgrade(database_url)
    create_topics(module_bootstrap, partitions=3, replication=1)
    log_dir: Path = tmp_path_factory.mktemp("skan-intake")
    # The general limit stays the default 1 MiB: the SKAN routes must refuse far below it.
    env = service_env(module_bootstrap, database_url, APPREFER_SKAN_UNKNOWN_APP_RATE_PER_MINUTE=str(UNKNOWN_APP_RATE))
    edge = start_edge(env, log_dir)
    base = edge.base
    decoder = ServiceProcess(["run", "skan"], env, log_dir).start()
    try:
        admin = edge.admin
        apple_app_id = str(random.randrange(10**8, 10**9))
        app = admin.new_app(platform="ios", apple_app_id=apple_app_id)
        admin.call("PUT", f"/apps/{app['app_id']}/skan/schema", {
            "schema_id": "s-intake", "valid_from": "2020-01-01T00:00:00Z", "signature_policy": "skip",
            "mode": "revenue", "event_name": "af_skad_revenue", "currency": "USD", "unit": 1.0})
        yield Intake(base, admin, database_url, apple_app_id, int(base.rsplit(":", 1)[1]))
        edge.assert_alive()
        decoder.assert_alive()
    finally:
        decoder.terminate()
        edge.terminate()


def postback(apple_app_id: str | int, **extra: Any) -> dict[str, Any]:
    return {"version": "3.0", "ad-network-id": "example123.skadnetwork", "campaign-id": 12,
            "app-id": int(apple_app_id), "transaction-id": str(uuid.uuid4()), "redownload": False,
            "source-app-id": 1234567891, "fidelity-type": 1, "did-win": True, "conversion-value": 7,
            "attribution-signature": "MEUCIQDsimulatedtestappsignature==", "ad-network-campaign-id": "222222",
            "timestamp": "1596525944", **extra}


def unknown_apple_app_id() -> str:
    return str(random.randrange(10**9, 2 * 10**9))  # ten digits: never the known app's nine


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes, padded with an enrichment field."""
    raw = json.dumps({**body, "partner-pad": ""}).encode()
    return json.dumps({**body, "partner-pad": "x" * (size - len(raw))}).encode()


def assert_too_large(answer: tuple[int, dict[str, str], Any]) -> None:
    status, headers, payload = answer
    assert status == 413, (status, payload)
    assert headers["content-type"].startswith("application/json")
    assert payload["error"] == "too_large" and payload["field"] == "body"
    assert f"{SKAN_LIMIT} bytes" in payload["message"]


def test_a_17_kb_postback_is_413_naming_the_limit_on_both_routes(intake: Intake) -> None:
    before = intake.intake_counts()
    big = padded(postback(intake.known_apple_app_id), 17 * 1024)
    for path in ROUTES:
        assert_too_large(intake.post(big, path))
        assert_too_large(intake.post(big, path, chunked=True))
    at_limit = padded(postback(intake.known_apple_app_id), SKAN_LIMIT)
    assert intake.post(at_limit)[0] == 200
    assert intake.post(at_limit, chunked=True)[0] == 200  # the same postback again: a duplicate, still 200
    after = intake.intake_counts()
    assert after["too_large"] - before["too_large"] == 4
    assert after["accepted"] - before["accepted"] == 2


def test_a_900_kb_postback_is_413_not_500_and_the_general_limit_stays_for_events(intake: Intake) -> None:
    huge = padded(postback(unknown_apple_app_id()), 900 * 1024)
    for path in ROUTES:
        assert_too_large(intake.post(huge, path))
        assert_too_large(intake.post(huge, path, chunked=True))
    assert http_call("GET", f"{intake.base}/healthz")[0] == 200
    # /v1/events still reads up to the general 1 MiB: 100 KB that are not JSON are a 400, not a 413.
    app = intake.admin.new_app()
    status, _, answer = http_call("POST", f"{intake.base}/v1/events", None,
                                  {"Authorization": f"Bearer {app['live_key']}"}, raw=b'{"x": "' + b"y" * 100_000)
    assert (status, answer["error"]) == (400, "invalid_json")


def test_the_body_is_refused_without_reading_past_the_limit(intake: Intake) -> None:
    """A declared length over the limit is refused before any byte of the body is read; a chunked body as
    soon as the limit is passed. Both clients then stall: an answer means the gateway did not wait for more."""
    head = f"POST {ROUTES[0]} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    declared = f"{head}Content-Type: application/json\r\nContent-Length: {900 * 1024}\r\n\r\n".encode()
    chunk = b"x" * (SKAN_LIMIT + 1024)
    chunked = f"{head}Transfer-Encoding: chunked\r\n\r\n{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    for request in (declared, chunked):
        with socket.create_connection(("127.0.0.1", intake.port), timeout=5) as connection:
            connection.sendall(request)
            received = b""
            while b"}" not in received and (data := connection.recv(65536)):
                received += data
            answer = received.decode()
        assert answer.startswith("HTTP/1.1 413 "), answer[:200]
        assert f"{SKAN_LIMIT} bytes" in answer


def test_unknown_app_postbacks_beyond_the_rate_are_429_known_apps_never(intake: Intake) -> None:
    before = intake.intake_counts()
    flooder, other = "127.0.0.2", "127.0.0.3"
    answers = [intake.post(json.dumps(postback(unknown_apple_app_id())).encode(), ROUTES[i % 2], source=flooder)
               for i in range(UNKNOWN_APP_RATE + 2)]
    assert [status for status, _, _ in answers] == [200] * UNKNOWN_APP_RATE + [429, 429]
    _, headers, payload = answers[-1]
    assert payload["error"] == "rate_limited" and headers["content-type"].startswith("application/json")
    assert 1 <= int(headers["retry-after"]) <= 60 // UNKNOWN_APP_RATE
    # The same address, for the known app: never limited, duplicates included.
    known = json.dumps(postback(intake.known_apple_app_id)).encode()
    assert [intake.post(known, source=flooder)[0] for _ in range(3)] == [200] * 3
    # Another address has its own bucket.
    assert intake.post(json.dumps(postback(unknown_apple_app_id())).encode(), source=other)[0] == 200
    # Malformed postbacks are 400 whatever the bucket, and counted as invalid.
    assert intake.post(b'{"version": "4.0" "app-id": 1}', source=flooder)[0] == 400

    after = intake.intake_counts()
    assert set(after) == {"accepted", "too_large", "invalid", "unknown_app", "rate_limited"}
    delta = {outcome: after[outcome] - before[outcome] for outcome in after}
    assert delta == {"accepted": 3, "too_large": 0, "invalid": 1, "unknown_app": UNKNOWN_APP_RATE + 1,
                     "rate_limited": 2}


def test_an_unknown_apps_postback_is_stored_as_a_summary_and_a_known_apps_in_full(intake: Intake) -> None:
    source = "127.0.0.4"
    unknown_id = unknown_apple_app_id()
    unknown = postback(unknown_id, **{"ad-network-campaign-name": "summer"})
    known = postback(intake.known_apple_app_id)
    assert intake.post(padded(unknown, 8000), source=source)[0] == 200
    assert intake.post(padded(unknown, 8000), ROUTES[1], source=source)[0] == 200  # Apple's copy: a duplicate
    assert intake.post(padded(known, 8000), source=source)[0] == 200
    tids = (unknown["transaction-id"], known["transaction-id"])
    wait_until(lambda: len(intake.rows(*tids)) == 2 and intake.rows(tids[0])[tids[0]].duplicates == 1,
               timeout=60, what="both postbacks stored, the copy counted")

    rows = intake.rows(*tids)
    summary, full = rows[tids[0]], rows[tids[1]]
    assert summary.app_id is None and summary.apple_app_id == unknown_id
    assert summary.reason == f"no app with apple_app_id {unknown_id}"
    assert summary.raw_body == ""
    assert summary.postback == {"transaction-id": tids[0], "app-id": int(unknown_id), "version": "3.0",
                                "ad-network-id": "example123.skadnetwork"}
    assert (summary.ad_network_id, summary.version, summary.sequence_index) == ("example123.skadnetwork", "3.0", 0)
    assert summary.received_at_ms > 0 and summary.counted_as_install is False and summary.records == []
    assert summary.conversion_value is None and set(summary.sources.split(",")) == {"network", "apple"}
    assert len(json.dumps(summary.postback)) < 200

    assert full.counted_as_install is True and full.records and full.conversion_value == 7
    assert len(full.raw_body) == 8000 and full.postback["partner-pad"]
    shown = intake.admin.call("GET", f"/skan/postbacks/{tids[0]}")
    assert shown["raw_body"] == "" and shown["enrichment"] == {}
