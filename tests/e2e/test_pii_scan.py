"""No raw personal data anywhere: a corpus sent through every entry point, then every byte kept is scanned.

Through the real pipeline (gateway, attribution, fanout, the forwarders against the fakes, audit, the SKAN
decoder; real broker, real PostgreSQL, services logging at INFO as in production): SDK events (one batch, live
and pk_test_), server-to-server clicks, a tracking link's query, a RevenueCat webhook and a SKAN postback, full
of personal data under every spelling (``Email``, ``user_email``, ``e-mail``, ``properties.profile.email``,
``phoneNumber``, ``mobile``, ``firstName``, ``dob``, ...), in free text, as object keys, in the install referrer
and the user agent. The purchases reach Meta with a revoked token (so they end in ``forward.meta.dlq``), TikTok
after a trip through ``forward.tiktok.retry``, and Google Ads. Identifiers that look like personal data are
refused (400) and their values must not be kept either.

Then every record of every topic (``all_topics()``: dead-letter and retry topics too; keys, values and headers
as raw bytes from the start), every row of every table (as text, on PostgreSQL) and every service's log file is
searched, case-insensitively, for each value in the forms sent and normalised (lower-cased email, digits-only
phone with and without ``+``, the national number, JSON- and URL-escaped). Nothing may be found, while controls
sent through the same paths -- non-personal markers that are meant to be kept -- must be, in each place.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlencode, urlsplit

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from sqlalchemy import Engine, create_engine, inspect, text

from shared.db.models import Base
from shared.kafka.topics import all_topics
from tests.e2e.conftest import Pipeline
from tests.support.pipeline import ServiceProcess, http_call
from tests.support.pipeline import wait_until as wait

pytestmark = pytest.mark.slow

RC_AUTHORIZATION = "Bearer rc-pii-secret"
AD_NETWORK = "example123.skadnetwork"
# Services log at INFO, the production default: whatever a service says there is scanned too.
AT_INFO = {"APPREFER_LOG_LEVEL": "INFO"}


# --- the corpus -----------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Personal values (each with the forms to look for) and controls (markers that must be found)."""

    personal: dict[str, list[str]] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)

    def email(self, label: str) -> str:
        local = f"Pii.{label}.{uuid.uuid4().hex[:10]}"
        value = f"{local}@Example.com"
        self.personal[f"email {label}"] = [value, local]  # the local part alone would be a leak too
        return value

    def phone(self, label: str, style: str = "intl") -> str:
        subscriber = f"{random.randrange(10**5):05d}"
        if style == "intl":  # a UK mobile number of the range kept for drama
            value, digits, national = f"+44 7700 9{subscriber}", f"4477009{subscriber}", f"7700 9{subscriber}"
            forms = [value, digits, "+" + digits, national, national.replace(" ", "")]
        else:  # North American, without country code
            value = f"(415) 55{subscriber[:1]}-{subscriber[1:]}"
            forms = [value, f"41555{subscriber}", f"55{subscriber[:1]}-{subscriber[1:]}"]
        self.personal[f"phone {label}"] = forms
        return value

    def name(self, label: str) -> str:
        value = f"Quennell{uuid.uuid4().hex[:8]}"
        self.personal[f"name {label}"] = [value]
        return value

    def birth_date(self, label: str) -> str:
        year, month, day = random.randrange(1940, 2000), random.randrange(1, 13), random.randrange(10, 29)
        value = f"{year}-{month:02d}-{day}"
        self.personal[f"date of birth {label}"] = [value, f"{year}{month:02d}{day}"]
        return value

    def control(self, label: str) -> str:
        value = f"CTL-{label}-{uuid.uuid4().hex[:10]}"
        self.controls[label] = value
        return value

    def needles(self) -> dict[bytes, str]:
        """Every byte string to look for (lower-cased, as the haystacks are), and the label it betrays."""
        found: dict[bytes, str] = {}
        for label, forms in self.personal.items():
            for form in forms:
                for variant in _variants(form):
                    found[variant] = label
        return found


def _variants(form: str) -> set[bytes]:
    lower = form.lower()
    return {variant.encode() for variant in (
        lower, json.dumps(lower)[1:-1], quote(lower, safe="").lower(), quote_plus(lower).lower())}


def sdk_events(corpus: Corpus, tag: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(installs, the purchase batch) of three devices attributed to Meta, TikTok and Google Ads."""
    now = int(time.time())
    devices = {"meta": f"dev-meta-{tag}", "tiktok": f"dev-tt-{tag}", "google_ads": f"dev-g-{tag}"}
    click_ids = {"meta": ("fbclid", f"IwAR-pii-{tag}"), "tiktok": ("ttclid", f"E.C.P.pii-{tag}"),
                 "google_ads": ("gclid", f"Cj0K-pii-{tag}")}
    installs = [{"event_id": f"install-{network}-{tag}", "event_name": "install", "event_time": now - 120,
                 "device": {"device_id": device, "os": "android", "gaid": f"gaid-{network}-{tag}",
                            "user_agent": f"Agent/1.0 (contact {corpus.email('install-ua-' + network)})"},
                 "referrer": {click_ids[network][0]: click_ids[network][1],
                              "install_referrer": urlencode({"utm_source": "ads", "email": corpus.email(
                                  "install-referrer-" + network), "utm_content": f"call {corpus.phone('referrer')}"})}}
                for network, device in devices.items()]
    meta_purchase = {
        "event_id": f"buy-meta-{tag}", "event_name": "purchase", "event_time": now,
        "device": {"device_id": devices["meta"], "os": "android"},
        "revenue": {"amount": 9.99, "currency": "USD"},
        # No `user`: the hashes of the fields named like personal data must fill it for Meta.
        "Email": corpus.email("top-level Email"), "user_email": corpus.email("top-level user_email"),
        "e-mail": corpus.email("top-level e-mail"), "phoneNumber": corpus.phone("top-level phoneNumber"),
        "properties": {
            "sku": corpus.control("kafka"),
            "profile": {"email": corpus.email("properties.profile.email"),
                        "phone": corpus.phone("properties.profile.phone", "nanp"),
                        "firstName": corpus.name("firstName"), "last_name": corpus.name("last_name"),
                        "date_of_birth": corpus.birth_date("date_of_birth"), "dob": corpus.birth_date("dob"),
                        "contacts": [{"mobile": corpus.phone("contacts[0].mobile")}]},
            "notes": [f"please write to {corpus.email('notes[0]')}", f"or call {corpus.phone('notes[1]')}"],
            # Dropped, its path logged: the key, a control, must be in the gateway's log, the value nowhere.
            corpus.control("log"): f"drop me: {corpus.email('note under a control key')}",
            corpus.email("an object key"): True,
            "deep_link": f"app://open?who={quote(corpus.email('url-encoded in a deep link'), safe='')}",
        },
    }
    tiktok_purchase = {
        "event_id": f"buy-tt-{tag}", "event_name": "purchase", "event_time": now,
        "device": {"device_id": devices["tiktok"], "os": "android"}, "revenue": {"amount": 4.99, "currency": "EUR"},
        "user": {"email": corpus.email("user.email"), "phone": corpus.phone("user.phone"),
                 "first_name": corpus.name("user.first_name")},
        "properties": {"customer": {"Mobile_Number": corpus.phone("customer.Mobile_Number"),
                                    "E_Mail": corpus.email("customer.E_Mail")}},
    }
    google_purchase = {
        "event_id": f"buy-g-{tag}", "event_name": "purchase", "event_time": now,
        "device": {"device_id": devices["google_ads"], "os": "android"}, "revenue": {"amount": 1.5, "currency": "USD"},
        "userEmail": corpus.email("top-level userEmail"), "note": f"tel:{corpus.phone('tel: uri')}",
    }
    return installs, {"events": [meta_purchase, tiktok_purchase, google_purchase]}


# --- reading everything back ----------------------------------------------------------------------------


def every_record(bootstrap: str) -> dict[str, list[bytes]]:
    """topic -> each record's key, value and headers as one byte string, read from the start of every partition
    of every topic to its end (one consumer, no group join)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pii-scan", "enable.partition.eof": True,
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        topics = all_topics()
        assert set(topics) <= set(metadata), set(topics) - set(metadata)
        partitions = [TopicPartition(topic, p, 0) for topic in topics for p in metadata[topic].partitions]
        consumer.assign(partitions)
        at_end: set[tuple[str, int]] = set()
        records: dict[str, list[bytes]] = defaultdict(list)
        deadline = time.monotonic() + 60
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"not at the end of {len(partitions) - len(at_end)} partitions"
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                topic = message.topic() or ""
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, f"reading {topic}: {error}"
                    at_end.add((topic, message.partition() or 0))
                    continue
                listed = message.headers() or []
                pairs = listed.items() if isinstance(listed, dict) else listed
                headers = b"\0".join(_bytes(key) + b"=" + _bytes(value) for key, value in pairs)
                records[topic].append(b"\0".join((message.key() or b"", message.value() or b"", headers)))
        return records
    finally:
        consumer.close()


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


def every_row(engine: Engine) -> dict[str, list[bytes]]:
    """table -> each row as PostgreSQL's text of the whole row (every column: text, JSON, numbers)."""
    tables = inspect(engine).get_table_names()
    assert set(Base.metadata.tables) <= set(tables), set(Base.metadata.tables) - set(tables)
    rows: dict[str, list[bytes]] = {}
    with engine.connect() as connection:
        for table in tables:
            quoted = connection.dialect.identifier_preparer.quote(table)
            rows[table] = [str(row[0]).encode() for row in connection.execute(text(f"SELECT t::text FROM {quoted} t"))]
    return rows


def every_log(processes: list[ServiceProcess]) -> dict[str, list[bytes]]:
    """log file -> its bytes, for every service the test ran (the gateway and each consumer)."""
    return {process.log_path.name: [process.log_path.read_bytes()] for process in processes}


def findings(places: dict[str, list[bytes]], needles: dict[bytes, str]) -> set[tuple[str, str]]:
    """(place, label) for each needle found in a place's haystacks, case-insensitively."""
    found: set[tuple[str, str]] = set()
    for place, haystacks in places.items():
        for haystack in haystacks:
            lower = haystack.lower()
            found.update((place, label) for needle, label in needles.items() if needle in lower)
    return found


@pytest.fixture
def engine(migrated_pg_url: str) -> Iterator[Engine]:
    engine = create_engine(migrated_pg_url)
    yield engine
    engine.dispose()


def clicks_stored(engine: Engine, click_keys: set[str]) -> bool:
    with engine.connect() as connection:
        stored = {row[0] for row in connection.execute(text("SELECT click_key FROM clicks"))}
    return click_keys <= stored


def metric(base: str, name: str, **labels: str) -> float:
    _, _, body = http_call("GET", f"{base}/metrics")
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{name}{{{wanted}}} ([0-9.e+]+)$", body.decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# --- the test -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", [AT_INFO], indirect=True)
def test_no_raw_personal_data_in_any_topic_table_or_log(pipeline: Pipeline, engine: Engine) -> None:
    corpus, tag = Corpus(), uuid.uuid4().hex[:8]
    skan = ServiceProcess(["run", "skan"], pipeline.env, pipeline.log_dir).start()
    try:
        dropped_before = _send_the_corpus(pipeline, engine, corpus, tag)
    finally:
        skan.terminate()
    for process in pipeline.processes:
        process.assert_alive()

    places = {**{f"topic {t}": r for t, r in every_record(pipeline.bootstrap).items()},
              **{f"table {t}": r for t, r in every_row(engine).items()},
              **{f"log {name}": r for name, r in every_log([*pipeline.processes, skan]).items()}}
    leaks = findings(places, corpus.needles())
    assert not leaks, "raw personal data found:\n" + "\n".join(f"  {label} in {place}" for place, label in
                                                                sorted(leaks))

    # The scan sees what is there: each control, sent upper-case and looked for lower-case, is found.
    controls = {value.lower().encode(): label for label, value in corpus.controls.items()}
    seen = findings(places, controls)
    assert ("topic events.raw", "kafka") in seen and ("topic forward.meta.dlq", "kafka") in seen, seen
    assert ("table installs", "db") in seen and ("table audit_log", "audit") in seen, seen
    assert any(place.startswith("log run-gateway") and label == "log" for place, label in seen), seen
    # ... and what the fakes received (what left apprefer) holds no raw value either.
    sent_out = repr([r.body for fake in (pipeline.meta, pipeline.tiktok, pipeline.google) for r in fake.requests])
    assert not findings({"fakes": [sent_out.encode()]}, corpus.needles())

    # Hashed, not lost: Meta got the hashes of the fields named like personal data, TikTok those of `user`.
    [meta_request] = [r.body for r in pipeline.meta.requests if f"buy-meta-{tag}" in repr(r.body)]
    [meta_event] = [e for e in meta_request["data"] if e["event_id"] == f"buy-meta-{tag}"]
    assert set(meta_event["user_data"]) >= {"em", "ph", "fn", "ln", "db"}, meta_event["user_data"]
    assert pipeline.tiktok.unique_events[("Purchase", f"buy-tt-{tag}")]["user"]["email"]
    # Every entry point counted what it dropped.
    for entry, before in dropped_before.items():
        after = metric(pipeline.base, "apprefer_personal_data_dropped_total", entry=entry, kind="email")
        assert after > before, (entry, before, after)


def _send_the_corpus(pipeline: Pipeline, engine: Engine, corpus: Corpus, tag: str) -> dict[str, float]:
    """Sends it all, waits until it has landed; returns the drop counter of each entry point before."""
    app = pipeline.configured_app(meta_token="revoked-token")  # Meta answers 190: the purchases are dead-lettered
    app_id, live = app["app_id"], app["live_key"]
    corpus.controls["db"] = f"dev-meta-{tag}"  # a device id, kept in installs
    corpus.controls["audit"] = f"buy-meta-{tag}"  # an event id, kept in the audit log
    pipeline.admin.call("PUT", f"/apps/{app_id}/integrations/revenuecat",
                        {"credentials": {"authorization": RC_AUTHORIZATION}})
    headers = {"Authorization": f"Bearer {live}", "Content-Type": "application/json"}
    dropped_before = {entry: metric(pipeline.base, "apprefer_personal_data_dropped_total", entry=entry, kind="email")
                      for entry in ("events", "clicks", "tracking_link", "revenuecat", "skan")}

    # SDK events: installs, then one batch of purchases; TikTok's purchase goes through the retry topic.
    installs, purchases = sdk_events(corpus, tag)
    for install in installs:
        pipeline.send(live, install)
    pipeline.audited(f"install-tiktok-{tag}", "tiktok", "delivered")
    pipeline.tiktok.fail_next(3, 503, {"code": 50000, "message": "service unavailable"})
    pipeline.send(live, purchases)
    sandbox = {"event_id": f"buy-sandbox-{tag}", "event_name": "purchase", "event_time": int(time.time()),
               "device": {"device_id": f"dev-sandbox-{tag}"}, "user_phone": corpus.phone("sandbox user_phone"),
               "properties": {"remark": corpus.email("sandbox remark")}}
    pipeline.send(app["test_key"], sandbox)

    # Identifiers that look like personal data are refused, naming the field.
    refused = {"event_id": "x", "event_name": "purchase", "event_time": int(time.time()),
               "device": {"device_id": corpus.email("device_id")}}
    status, _, answer = http_call("POST", f"{pipeline.base}/v1/events", refused, headers)
    assert (status, answer["field"]) == (400, "device.device_id"), answer

    # Server-to-server clicks and a tracking link.
    status, _, click = http_call("POST", f"{pipeline.base}/v1/clicks", {
        "fbclid": f"IwAR-click-{tag}", "ip": "203.0.113.8", "user_agent": "Mozilla/5.0", "campaign": "spring",
        "email": corpus.email("click email"), "phone_number": corpus.phone("click phone_number"),
        "utm_content": f"from {corpus.email('click utm_content')}", "memo": corpus.phone("click memo", "nanp")},
        headers)
    assert status == 202, click
    status, _, answer = http_call("POST", f"{pipeline.base}/v1/clicks", {"gclid": corpus.email("click gclid")}, headers)
    assert (status, answer["field"]) == (400, "gclid"), answer
    link = pipeline.admin.call("POST", f"/apps/{app_id}/links", {"network": "meta", "campaign": "summer"}, expect=201)
    query = urlencode({"fbclid": f"IwAR-link-{tag}", "Email": corpus.email("link Email"),
                       "mobile": corpus.phone("link mobile"), "utm_term": corpus.email("link utm_term"),
                       "sub1": f"call {corpus.phone('link sub1', 'nanp')}"})
    status, redirect, _ = http_call("GET", f"{pipeline.base}/c/{link['link_id']}?{query}",
                                    headers={"User-Agent": "Mozilla/5.0"})
    assert status == 302
    link_click_key = unquote(urlsplit(redirect["location"]).query).rpartition("click_id=")[2]
    status, _, _ = http_call("GET", f"{pipeline.base}/c/{link['link_id']}?gclid={quote(corpus.phone('link gclid'))}")
    assert status == 400

    # RevenueCat: the purchase of the Meta device, with personal attributes and an email as app user id.
    rc_email = corpus.email("rc app_user_id")
    rc_id = str(uuid.uuid4())
    webhook = {"api_version": "1.0", "event": {
        "id": rc_id, "type": "INITIAL_PURCHASE", "event_timestamp_ms": int(time.time() * 1000),
        "purchased_at_ms": int(time.time() * 1000) - 1000, "environment": "PRODUCTION", "store": "PLAY_STORE",
        "period_type": "NORMAL", "product_id": "monthly", "app_user_id": rc_email, "original_app_user_id": rc_email,
        "aliases": [rc_email, corpus.phone("rc alias")], "price": 4.99, "price_in_purchased_currency": 4.99,
        "currency": "USD", "presented_offering_id": f"offer for {corpus.email('rc presented_offering_id')}",
        "subscriber_attributes": {
            name: {"value": value, "updated_at_ms": 1} for name, value in {
                "$apprefer_device_id": f"dev-meta-{tag}", "$email": corpus.email("rc $email"),
                "$phoneNumber": corpus.phone("rc $phoneNumber"), "user_email": corpus.email("rc user_email"),
                "$displayName": corpus.name("rc $displayName"), "$idfa": corpus.email("rc $idfa"),
                "firstName": corpus.name("rc firstName")}.items()}}}
    status, _, answer = http_call("POST", f"{pipeline.base}/v1/webhooks/revenuecat/{app_id}", webhook,
                                  {"Authorization": RC_AUTHORIZATION, "Content-Type": "application/json"})
    assert status == 200, answer

    # SKAN: enrichment in the redirect's query is hashed or dropped; in the body (kept as received) it is a 400.
    apple_app_id = str(random.randrange(10**8, 10**9))
    ios_app = pipeline.admin.new_app(platform="ios", apple_app_id=apple_app_id)
    pipeline.admin.call("PUT", f"/apps/{ios_app['app_id']}/skan/schema", {
        "schema_id": "s-pii", "valid_from": "2020-01-01T00:00:00Z", "signature_policy": "skip", "mode": "revenue",
        "event_name": "af_skad_revenue", "currency": "USD", "unit": 1.0})
    transaction_id = str(uuid.uuid4())
    postback = {"version": "3.0", "ad-network-id": AD_NETWORK, "campaign-id": 12, "app-id": int(apple_app_id),
                "transaction-id": transaction_id, "redownload": False, "source-app-id": 1234567891,
                "fidelity-type": 1, "did-win": True, "conversion-value": 7,
                "attribution-signature": "MEUCIQDsimulatedtestappsignature==", "ad-network-campaign-id": "222222"}
    skan_query = urlencode({"email": corpus.email("skan email"), "user_phone": corpus.phone("skan user_phone"),
                            "ad-network-campaign-name": f"ask {corpus.email('skan campaign name')}"})
    status, _, answer = http_call("POST", f"{pipeline.base}/v1/skan/postbacks?{skan_query}", postback,
                                  {"Content-Type": "application/json"})
    assert status == 200, answer
    enriched_body = {**postback, "transaction-id": str(uuid.uuid4()), "partner": {"email": corpus.email("skan body")}}
    status, _, answer = http_call("POST", f"{pipeline.base}/v1/skan/postbacks", enriched_body,
                                  {"Content-Type": "application/json"})
    assert (status, answer["field"]) == (400, "partner.email"), answer

    # Wait for everything to land where it ends.
    pipeline.audited(f"buy-meta-{tag}", "meta", "rejected")
    pipeline.audited(f"rc_{rc_id}", "meta", "rejected")
    pipeline.audited(f"buy-tt-{tag}", "tiktok", "delivered")
    pipeline.audited(f"buy-g-{tag}", "google_ads", "delivered")
    pipeline.audited(f"buy-sandbox-{tag}", "meta", "sandbox")
    assert any(r["status"] == "retrying" for r in pipeline.audit(f"buy-tt-{tag}"))
    wait(lambda: clicks_stored(engine, {click["click_key"], link_click_key}), timeout=30, what="the clicks stored")
    wait(lambda: http_call("GET", f"{pipeline.admin.base}/admin/v1/skan/postbacks/{transaction_id}",
                           headers=pipeline.admin.headers)[0] == 200, timeout=30, what="the SKAN postback stored")
    return dropped_before
