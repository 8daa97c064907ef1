"""Bad input at the real gateway and admin service processes (real broker, real PostgreSQL): a clear 4xx, and
nothing on Kafka.

Two parts: hand-written hostile requests (oversized, deeply nested, wrong content type, non-UTF-8, bodies not in
their Content-Encoding, huge batches, impossible timestamps, unknown fields, a bare admin token), each answered
with a JSON 4xx and none of them producing a record; then schemathesis against each service's GET /openapi.json
(the gateway's ingest document at the gateway, the admin API's at the admin service), bounded in examples and
time, asserting no 5xx and answers that match the document (status code, content type, body schema).

Content type: the gateway parses every body as JSON whatever its Content-Type header (SDKs and `curl -d`
send application/x-www-form-urlencoded), so a JSON body labelled text/plain is accepted, and a form body is a
400 invalid_json. services/gateway/openapi.py says so.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from shared.db.migrate import upgrade
from shared.kafka.topics import CLICKS_RAW, EVENTS_RAW, SKAN_RAW, create_topics
from tests.support.pipeline import ADMIN_TOKEN, AdminApi, http_call, read_topic, service_env, start_edge
from tests.support.postgres import create_database

MAX_BODY = 200_000
RC_AUTHORIZATION = "Bearer rc-webhook-secret"
# The fuzzing budget: examples per operation and generation mode, and a hard stop for the whole run. The
# examples are derandomized (the same inputs every run, so `make test` is a stable gate); set
# APPREFER_FUZZ_RANDOM=1, and a bigger APPREFER_FUZZ_EXAMPLES, to explore.
FUZZ_EXAMPLES = int(os.environ.get("APPREFER_FUZZ_EXAMPLES", "20"))
FUZZ_SECONDS = float(os.environ.get("APPREFER_FUZZ_SECONDS", "40"))  # both documents' runs together
# Each document's share of FUZZ_SECONDS, about what each takes unbounded (the admin API has twice the operations).
FUZZ_SHARE = {"gateway": 0.3, "admin": 0.7}
FUZZ_RANDOM = os.environ.get("APPREFER_FUZZ_RANDOM", "") not in ("", "0")
# Dry-run connection tests call the ad networks: never fuzzed (and their base URLs point nowhere below).
NOT_FUZZED = {"POST /admin/v1/apps/{app_id}/integrations/{network}/test"}
# Fuzzed with made-up ids only: deleting the playground app would leave every later operation a 404.
NOT_PINNED = {"DELETE /admin/v1/apps/{app_id}"}
DEAD_END = "http://127.0.0.1:9"


@dataclass
class Gw:
    base: str  # the gateway's
    bootstrap: str
    admin: AdminApi  # at the admin service's base
    app: dict[str, Any]  # the ingest app: keys, a link, a RevenueCat integration
    link_id: str
    playground_app_id: str  # the admin fuzzer's own app, so it cannot break the ingest app's setup
    markers: dict[str, set[str]] = field(default_factory=lambda: {EVENTS_RAW: set(), CLICKS_RAW: set(),
                                                                   SKAN_RAW: set()})

    def call(self, method: str, path: str, raw: bytes | None = None, headers: dict[str, str] | None = None,
             body: Any = None) -> tuple[int, dict[str, str], Any]:
        """At the gateway."""
        return http_call(method, f"{self.base}{path}", body, headers, raw=raw, timeout=30)

    def admin_call(self, method: str, path: str, raw: bytes | None = None, headers: dict[str, str] | None = None,
                   body: Any = None) -> tuple[int, dict[str, str], Any]:
        """At the admin service."""
        return http_call(method, f"{self.admin.base}{path}", body, headers, raw=raw, timeout=30)

    def base_of(self, service: str) -> str:
        return self.admin.base if service == "admin" else self.base

    @property
    def key_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app['live_key']}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gw(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    bootstrap = module_bootstrap
    database_url = create_database(postgres_server_url, f"gwfuzz_{uuid.uuid4().hex}")
    upgrade(database_url)
    # One partition on our own broker: one sentinel read back proves every earlier record was read.
    create_topics(bootstrap, partitions=1, replication=1)
    env = service_env(bootstrap, database_url, APPREFER_GATEWAY_MAX_BODY_BYTES=str(MAX_BODY),
                      APPREFER_ADMIN_MAX_BODY_BYTES=str(MAX_BODY),
                      APPREFER_META_BASE_URL=DEAD_END, APPREFER_GOOGLE_ADS_BASE_URL=DEAD_END,
                      APPREFER_GOOGLE_ADS_TOKEN_URL=DEAD_END, APPREFER_TIKTOK_BASE_URL=DEAD_END,
                      # The fuzz posts many unknown-app postbacks from one address; the limit has its own test.
                      APPREFER_SKAN_UNKNOWN_APP_RATE_PER_MINUTE="100000")
    edge = start_edge(env, tmp_path_factory.mktemp("gateway-fuzz"))
    admin = edge.admin
    try:
        app = admin.new_app()
        link = admin.call("POST", f"/apps/{app['app_id']}/links", {"network": "meta", "campaign": "fuzz"}, expect=201)
        admin.call("PUT", f"/apps/{app['app_id']}/integrations/revenuecat",
                   {"credentials": {"authorization": RC_AUTHORIZATION}})
        playground = admin.call("POST", "/apps", {"name": "playground", "platform": "ios"}, expect=201)
        yield Gw(edge.base, bootstrap, admin, app, link["link_id"], playground["app_id"])
        edge.assert_alive()
    finally:
        edge.terminate()


def marker() -> str:
    return f"fuzz-{uuid.uuid4().hex}"


def event(event_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body = {"event_id": event_id or marker(), "event_name": "purchase", "event_time": int(time.time()),
            "device": {"device_id": "dev-fuzz", "os": "ios"}}
    body.update(overrides)
    return body


DEEP = "__deep__"


def with_deep(body: Any, depth: int) -> bytes:
    """`body` as JSON with the string DEEP replaced by arrays nested `depth` levels (json.dumps would recurse)."""
    return json.dumps(body).replace(f'"{DEEP}"', "[" * (depth - 1) + "1" + "]" * (depth - 1)).encode()


def postback(transaction_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"version": "4.0", "ad-network-id": "example.skadnetwork", "source-identifier": "1234",
            "app-id": 525463029, "transaction-id": transaction_id, "redownload": False, "fidelity-type": 1,
            "did-win": True, "coarse-conversion-value": "high", "postback-sequence-index": 0,
            "attribution-signature": "MEUCIQ"}
    body.update(overrides)
    return body


def assert_clear_4xx(answer: tuple[int, dict[str, str], Any], status: int, error: str | None = None,
                     field: str | None = None) -> dict[str, Any]:
    code, headers, payload = answer
    assert code == status, (code, payload)
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert isinstance(payload, dict) and payload.get("error") and payload.get("message"), payload
    if error is not None:
        assert payload["error"] == error, payload
    if field is not None:
        assert payload.get("field") == field, payload
    return payload


def assert_none_reached_kafka(gw: Gw, topic: str, send_sentinel: Callable[[str], None],
                              identity: Callable[[dict[str, Any]], str]) -> None:
    """Produces sentinels through the gateway and reads the topic up to them: no marker may be there.

    The gateway answers after the broker's ack, so a rejected request's record (if any) precedes the sentinel on
    its partition. One partition (our own broker) needs one sentinel; a shared cluster's topics get enough
    sentinels (keyed apart) that every partition almost surely holds one."""
    partitions = len(AdminClient({"bootstrap.servers": gw.bootstrap}).list_topics(topic, timeout=10)
                     .topics[topic].partitions)
    sentinels = {marker() for _ in range(1 if partitions == 1 else 16 * partitions)}
    for sentinel in sentinels:
        send_sentinel(sentinel)
    records = read_topic(gw.bootstrap, topic, lambda rs: sentinels <= {identity(r["value"]) for r in rs})
    leaked = {identity(r["value"]) for r in records} & gw.markers[topic]
    assert not leaked, f"rejected requests reached {topic}: {sorted(leaked)[:5]}"


def events_clean(gw: Gw) -> None:
    def send(sentinel: str) -> None:
        body = event(sentinel, device={"device_id": sentinel})  # the key is app:device: spread over partitions
        assert gw.call("POST", "/v1/events", body=body, headers=gw.key_headers)[0] == 202

    assert_none_reached_kafka(gw, EVENTS_RAW, send, lambda v: v["event_id"])


def operations_of(schema: Any) -> list[Any]:
    from schemathesis.core.result import Ok

    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document has an invalid operation: {result}"
        operations.append(result.ok())
    return operations


# --- hand-written hostile requests ------------------------------------------------------------------------


def post_event_json(gw: Gw, body: Any, **expect: Any) -> dict[str, Any]:
    return assert_clear_4xx(gw.call("POST", "/v1/events", raw=json.dumps(body).encode(), headers=gw.key_headers),
                            **expect)


SHARED_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
DOCUMENTED = {
    "gateway": {"/v1/events", "/v1/clicks", "/c/{link_id}", "/v1/webhooks/revenuecat/{app_id}", "/v1/skan/postbacks",
                "/.well-known/skadnetwork/report-attribution/"},
    "admin": {"/admin/v1/apps", "/admin/v1/apps/{app_id}", "/admin/v1/apps/{app_id}/keys",
              "/admin/v1/apps/{app_id}/links", "/admin/v1/apps/{app_id}/integrations/{network}",
              "/admin/v1/apps/{app_id}/skan/schema", "/admin/v1/audit", "/admin/v1/dlq"},
}


@pytest.mark.parametrize("service", ["gateway", "admin"])
def test_openapi_document_is_served_and_describes_every_route(gw: Gw, service: str) -> None:
    """Each service serves its own document: the gateway's has the ingest routes and no admin one, the admin
    service's the admin API and no ingest route; both have health, metrics and the document itself."""
    import schemathesis

    base = gw.base_of(service)
    status, headers, document = http_call("GET", f"{base}/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert DOCUMENTED[service] | SHARED_PATHS <= paths
    if service == "gateway":
        assert not {path for path in paths if path.startswith("/admin")}, paths
    else:
        assert paths - SHARED_PATHS == {path for path in paths if path.startswith("/admin/v1/")}, paths
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    labels = {operation.label for operation in operations_of(schema)}
    documented = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
                  if path != "/openapi.json"}  # schemathesis leaves out the document's own URL
    assert labels == documented and len(labels) >= {"gateway": 8, "admin": 15}[service]


def test_oversized_bodies_are_413_everywhere(gw: Gw) -> None:
    m = marker()
    big = json.dumps(event(m, properties={"pad": "x" * (MAX_BODY + 10)})).encode()
    gw.markers[EVENTS_RAW].add(m)
    rc_headers = {"Authorization": RC_AUTHORIZATION}
    admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path, headers in [("/v1/events", gw.key_headers), ("/v1/clicks", gw.key_headers),
                          (f"/v1/webhooks/revenuecat/{gw.app['app_id']}", rc_headers), ("/v1/skan/postbacks", {}),
                          ("/.well-known/skadnetwork/report-attribution/", {})]:
        assert_clear_4xx(gw.call("POST", path, raw=big, headers=headers), 413, "too_large", "body")
    assert_clear_4xx(gw.admin_call("POST", "/admin/v1/apps", raw=big, headers=admin_headers), 413, "too_large", "body")
    events_clean(gw)


def test_deeply_nested_json_is_400_not_a_crash(gw: Gw) -> None:
    brackets = b"[" * 10_000 + b"]" * 10_000
    for path, headers in [("/v1/events", gw.key_headers), ("/v1/clicks", gw.key_headers),
                          (f"/v1/webhooks/revenuecat/{gw.app['app_id']}", {"Authorization": RC_AUTHORIZATION}),
                          ("/v1/skan/postbacks", {})]:
        # The SKAN routes take 16 KiB at most (APPREFER_SKAN_MAX_BODY_BYTES): a shorter nest for them.
        raw = brackets if "skan" not in path else b"[" * 5_000 + b"]" * 5_000
        assert_clear_4xx(gw.call("POST", path, raw=raw, headers=headers), 400, field="body")
    # Within orjson's parse limit (1024) but past what it can serialise again (254): was a 500.
    rc_path, rc_headers = f"/v1/webhooks/revenuecat/{gw.app['app_id']}", {"Authorization": RC_AUTHORIZATION}
    for depth in (65, 300, 1000):
        m = marker()
        gw.markers[EVENTS_RAW].update({m, "rc_" + m})
        gw.markers[CLICKS_RAW].add(m)
        gw.markers[SKAN_RAW].add(m)
        requests = [
            (gw.call, "POST", "/v1/events", gw.key_headers, event(m, properties={"deep": DEEP})),
            (gw.call, "POST", "/v1/events", gw.key_headers, {"events": [event(m, extra=DEEP)]}),
            (gw.call, "POST", "/v1/clicks", gw.key_headers, {"click_id": m, "deep": DEEP}),
            (gw.call, "POST", "/v1/skan/postbacks", {}, postback(m, partner=DEEP)),
            (gw.call, "POST", rc_path, rc_headers, {"event": {"id": m, "type": "TEST", "subscriber_attributes": DEEP}}),
            (gw.admin_call, "PUT", f"/admin/v1/apps/{gw.playground_app_id}/integrations/meta", gw.admin.headers,
             {"settings": {"deep": DEEP}}),
            (gw.admin_call, "PUT", f"/admin/v1/apps/{gw.playground_app_id}/skan/schema", gw.admin.headers,
             {"schema_id": "s", "valid_from": "2024-01-01T00:00:00Z", "mode": "table", "fine": {"0": DEEP}}),
        ]
        for call, method, path, headers, body in requests:
            answer = call(method, path, raw=with_deep(body, depth), headers=headers)
            assert_clear_4xx(answer, 400, field="body")
    # 64 levels are fine.
    ok = with_deep(event(properties={"ok": DEEP}), 62)
    assert gw.call("POST", "/v1/events", raw=ok, headers=gw.key_headers)[0] == 202
    events_clean(gw)


def test_content_type_is_not_trusted_json_is_parsed_whatever_the_header(gw: Gw) -> None:
    m = marker()
    headers = {"Authorization": gw.key_headers["Authorization"], "Content-Type": "text/plain"}
    status, _, answer = gw.call("POST", "/v1/events", raw=json.dumps(event(m)).encode(), headers=headers)
    assert (status, answer) == (202, {"accepted": 1})
    for content_type, raw in [("application/x-www-form-urlencoded", f"event_id={m}&event_name=install".encode()),
                              ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; "
                                                                  b"name=\"event_id\"\r\n\r\nabc\r\n--x--\r\n"),
                              ("application/xml", b"<event><event_id>1</event_id></event>")]:
        m = marker()
        gw.markers[EVENTS_RAW].add(m)
        answer = gw.call("POST", "/v1/events", raw=raw.replace(b"abc", m.encode()),
                         headers={**headers, "Content-Type": content_type})
        assert_clear_4xx(answer, 400, "invalid_json", "body")
    events_clean(gw)


def test_non_utf8_bodies_are_400(gw: Gw) -> None:
    m = marker()
    gw.markers[EVENTS_RAW].add(m)
    good = json.dumps(event(m)).encode()
    bodies = [good.replace(b'"purchase"', b'"purch\xff\xfese"'), good.decode().encode("utf-16"),
              good.decode().encode("utf-32"), b"\xc3\x28" + good, good.replace(b"dev-fuzz", b"dev-\xed\xa0\x80")]
    for raw in bodies:
        assert_clear_4xx(gw.call("POST", "/v1/events", raw=raw, headers=gw.key_headers), 400, "invalid_json", "body")
    for raw in bodies[:2]:
        assert_clear_4xx(gw.call("POST", "/v1/clicks", raw=raw, headers=gw.key_headers), 400, "invalid_json")
        assert_clear_4xx(gw.call("POST", "/v1/skan/postbacks", raw=raw), 400, "invalid_postback", "body")
        assert_clear_4xx(gw.admin_call("POST", "/admin/v1/apps", raw=raw, headers=gw.admin.headers), 400,
                         "invalid_json")
    events_clean(gw)


@pytest.mark.parametrize("service", ["gateway", "admin"])
def test_bodies_not_valid_in_their_content_encoding_are_400(gw: Gw, service: str) -> None:
    """Was a 500 (aiohttp's decompression error escaped request.read())."""
    m = marker()
    gw.markers[EVENTS_RAW].add(m)
    compressed = gzip.compress(json.dumps(event(m)).encode())
    corrupt = compressed[:12] + bytes(b ^ 0xFF for b in compressed[12:-8]) + compressed[-8:]
    bodies = [("gzip", b'{"event_id": "not compressed"}'), ("gzip", corrupt), ("deflate", b"\x78\x9c\xff\xff")]
    rc_headers = {"Authorization": RC_AUTHORIZATION}
    call = gw.admin_call if service == "admin" else gw.call
    routes = [("/admin/v1/apps", gw.admin.headers)] if service == "admin" else [
        ("/v1/events", gw.key_headers), ("/v1/clicks", gw.key_headers),
        (f"/v1/webhooks/revenuecat/{gw.app['app_id']}", rc_headers), ("/v1/skan/postbacks", {})]
    for path, headers in routes:
        for encoding, raw in bodies:
            answer = call("POST", path, raw=raw, headers={**headers, "Content-Encoding": encoding})
            assert_clear_4xx(answer, 400, "invalid_body", "body")
        # A gzip stream cut short decodes to what it holds (aiohttp does not insist on its end): here nothing,
        # which each route refuses as it refuses an empty body.
        answer = call("POST", path, raw=compressed[:10], headers={**headers, "Content-Encoding": "gzip"})
        assert_clear_4xx(answer, 400)
        # An encoding the service cannot decode: refused before any route, in JSON too.
        answer = call("POST", path, raw=compressed, headers={**headers, "Content-Encoding": "br"})
        assert_clear_4xx(answer, 400, "unsupported_encoding", "body")
    if service == "gateway":
        status, _, answer = gw.call("POST", "/v1/events", raw=gzip.compress(json.dumps(event()).encode()),
                                    headers={**gw.key_headers, "Content-Encoding": "gzip"})
        assert (status, answer) == (202, {"accepted": 1})
    events_clean(gw)


def test_huge_and_empty_batches_are_400_and_nothing_of_them_is_produced(gw: Gw) -> None:
    ids = [marker() for _ in range(501)]
    gw.markers[EVENTS_RAW].update(ids)
    post_event_json(gw, {"events": [{"event_id": i, "event_name": "x", "event_time": int(time.time()),
                                     "device": {"device_id": "d"}} for i in ids]}, status=400, field="events")
    post_event_json(gw, {"events": []}, status=400, field="events")
    post_event_json(gw, {"events": {"0": event()}}, status=400, field="events")
    # One bad event rejects the batch: the good ones before it are not produced either.
    post_event_json(gw, {"events": [event(ids[0]), event(ids[1]), event(ids[2], event_time=-1)]}, status=400,
                    field="events[2].event_time")
    post_event_json(gw, {"events": [event(ids[3])], "api_version": 2}, status=400, field="api_version")
    events_clean(gw)


@pytest.mark.parametrize("event_time", [
    -1, -1_700_000_000, "-1", 0, 1_000_000_000, "2009-12-31T23:59:59Z",  # before 2010, or negative
    10_000_000_000, 99_999_999_999_999, 1e300, "2999-01-01T00:00:00Z", "4102444800",  # far future
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",  # out of datetime's range: was a 500
    "NaN", "Infinity", "-Infinity", "1e400", "", "yesterday", "2024-01-01T00:00:00", True, None, [1], {"s": 1},
])
def test_impossible_event_times_are_400_naming_event_time(gw: Gw, event_time: Any) -> None:
    m = marker()
    gw.markers[EVENTS_RAW].add(m)
    post_event_json(gw, event(m, event_time=event_time), status=400, field="event_time")


def test_far_future_in_milliseconds_and_now_in_rfc3339(gw: Gw) -> None:
    m = marker()
    gw.markers[EVENTS_RAW].add(m)
    post_event_json(gw, event(m, event_time=int(time.time() * 1000) + 2 * 24 * 3600 * 1000), status=400,
                    field="event_time")
    ok = event(event_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    assert gw.call("POST", "/v1/events", body=ok, headers=gw.key_headers)[0] == 202
    events_clean(gw)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"device": {"device_id": "d", "imei": "3567"}}, "device.imei"),
    ({"device": {"device_id": "d", "os": "windows"}}, "device.os"),
    ({"device": {"device_id": "   "}}, "device.device_id"),
    ({"device": {"device_id": "d" * 101}}, "device.device_id"),
    ({"device": "d"}, "device"),
    ({"referrer": {"utm_source": "x"}}, "referrer.utm_source"),
    ({"revenue": {"amount": 1, "currency": "USD", "tax": 0.1}}, "revenue.tax"),
    ({"revenue": {"amount": "9.99", "currency": "USD"}}, "revenue.amount"),
    ({"user": {"ssn": "123"}}, "user.ssn"),
    ({"user": {"email": {"a": 1}}}, "user.email"),
    # Personal data outside `user` is hashed now, not refused (tests/unit/test_personal_data.py); an identifier
    # that looks like it is refused.
    ({"device": {"device_id": "jane@example.com"}}, "device.device_id"),
    ({"referrer": {"fbclid": "+16505551212"}}, "referrer.fbclid"),
    ({"properties": []}, "properties"),
    ({"event_id": 7}, "event_id"),
])
def test_unknown_or_misplaced_fields_are_400_naming_them(gw: Gw, overrides: dict[str, Any], field: str) -> None:
    m = marker()
    gw.markers[EVENTS_RAW].add(m)
    post_event_json(gw, {**event(m), **overrides}, status=400, field=field)


def test_wrong_credentials_are_401(gw: Gw) -> None:
    m = marker()
    gw.markers[EVENTS_RAW].update({m, "rc_" + m})
    raw = json.dumps(event(m)).encode()
    for headers in [{}, {"Authorization": "Bearer pk_live_unknown"}, {"Authorization": gw.app["live_key"]},
                    {"Authorization": "Bearer pk_live_\u00e9\u00ff"}, {"Authorization": "Basic cGtfbGl2ZQ=="}]:
        assert_clear_4xx(gw.call("POST", "/v1/events", raw=raw, headers=headers), 401, "unauthorized")
    webhook = json.dumps({"event": {"id": m, "type": "TEST"}}).encode()
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "\u00e9\u00ff"}]:
        assert_clear_4xx(gw.call("POST", f"/v1/webhooks/revenuecat/{gw.app['app_id']}", raw=webhook,
                                 headers=headers), 401, "unauthorized")
    for app_id in ("app_unknown", "%00"):  # a NUL reached PostgreSQL: was a 500
        assert_clear_4xx(gw.call("POST", f"/v1/webhooks/revenuecat/{app_id}", raw=webhook,
                                 headers={"Authorization": RC_AUTHORIZATION}), 401, "unauthorized")
    assert_clear_4xx(gw.admin_call("GET", "/admin/v1/apps", headers={"Authorization": "Bearer \u00e9\u00ff"}), 401)
    for value in (ADMIN_TOKEN, f"Basic {ADMIN_TOKEN}", f"Bearer{ADMIN_TOKEN}"):  # the raw token was accepted
        assert_clear_4xx(gw.admin_call("GET", "/admin/v1/apps", headers={"Authorization": value}), 401,
                         "unauthorized")
    events_clean(gw)


def test_bad_clicks_are_4xx_and_not_produced(gw: Gw) -> None:
    def click(**fields: Any) -> tuple[int, dict[str, str], Any]:
        m = marker()
        gw.markers[CLICKS_RAW].add(m)
        return gw.call("POST", "/v1/clicks", body={"click_id": m, **fields}, headers=gw.key_headers)

    assert_clear_4xx(click(ip=5), 400, field="ip")
    assert_clear_4xx(click(link_id="lnk_unknown"), 400, field="link_id")
    assert_clear_4xx(click(link_id={"a": 1}), 400, field="link_id")
    assert_clear_4xx(click(fbclid="x" * 501), 400, field="fbclid")
    assert_clear_4xx(click(gclid=["a"]), 400, field="gclid")
    assert_clear_4xx(click(**{f"p{i}": "v" for i in range(51)}), 400, field="properties")
    for raw in (b"[]", b'"x"', b"", b"{"):
        assert_clear_4xx(gw.call("POST", "/v1/clicks", raw=raw, headers=gw.key_headers), 400, field="body")
    m = marker()
    gw.markers[CLICKS_RAW].add(m)
    answer = gw.call("GET", f"/c/{gw.link_id}?click_id={m}&gclid={'x' * 501}")
    assert_clear_4xx(answer, 400, field="gclid")
    # A request line over 8190 bytes: aiohttp's parser answers 400 text/plain before any handler (documented).
    status, _, _ = gw.call("GET", f"/c/{gw.link_id}?click_id={m}&x={'y' * 9000}")
    assert status == 400
    for link in ("lnk_unknown", "%00", "%ff%fe", "a%2Fb", "x" * 5000):
        assert_clear_4xx(gw.call("GET", f"/c/{link}?click_id={marker()}"), 404, "not_found")

    def send(sentinel: str) -> None:
        assert gw.call("POST", "/v1/clicks", body={"click_id": sentinel}, headers=gw.key_headers)[0] == 202

    assert_none_reached_kafka(gw, CLICKS_RAW, send, lambda v: v["click_key"])


def test_bad_skan_postbacks_are_400_and_not_produced(gw: Gw) -> None:
    def post(body: Any, path: str = "/v1/skan/postbacks") -> tuple[int, dict[str, str], Any]:
        return gw.call("POST", path, raw=json.dumps(body).encode())

    ids = [marker() for _ in range(6)]
    gw.markers[SKAN_RAW].update(ids)
    assert_clear_4xx(post(postback(ids[0], **{"conversion-value": 64})), 400, field="conversion-value")
    assert_clear_4xx(post(postback(ids[1], **{"postback-sequence-index": 3})), 400,
                     field="postback-sequence-index")
    assert_clear_4xx(post(postback(ids[2], **{"coarse-conversion-value": "huge"})), 400,
                     field="coarse-conversion-value")
    assert_clear_4xx(post({k: v for k, v in postback(ids[3]).items() if k != "ad-network-id"},
                          "/.well-known/skadnetwork/report-attribution/"), 400, field="ad-network-id")
    # AdAttributionKit's JWS without a transaction-id: no key to store it under. Was a 500.
    assert_clear_4xx(post({"jws-string": "eyJ.eyJ.sig"}), 400, field="transaction-id")
    assert_clear_4xx(post({"jws-string": "eyJ.eyJ.sig", "transaction-id": ["x"]}), 400, field="transaction-id")
    for raw in (b"", b"  ", b"[1]", b"null", b"{"):
        assert_clear_4xx(gw.call("POST", "/v1/skan/postbacks", raw=raw), 400, "invalid_postback", "body")

    def send(sentinel: str) -> None:
        assert post(postback(sentinel))[0] == 200

    assert_none_reached_kafka(gw, SKAN_RAW, send, lambda v: v["transaction_id"])


def test_bad_revenuecat_webhooks_are_4xx(gw: Gw) -> None:
    def post(body: Any) -> tuple[int, dict[str, str], Any]:
        return gw.call("POST", f"/v1/webhooks/revenuecat/{gw.app['app_id']}", raw=json.dumps(body).encode(),
                       headers={"Authorization": RC_AUTHORIZATION})

    m = marker()
    gw.markers[EVENTS_RAW].add("rc_" + m)
    assert_clear_4xx(post({}), 400, field="event")
    assert_clear_4xx(post({"event": {"id": 5, "type": "TEST"}}), 400, field="event.id")
    assert_clear_4xx(post({"event": {"id": m, "type": "TEST", "price": "1"}}), 400, field="event.price")
    assert_clear_4xx(post({"event": {"id": m, "type": "TEST", "event_timestamp_ms": 1.5}}), 400,
                     field="event.event_timestamp_ms")
    assert_clear_4xx(post([1]), 400, field="body")
    events_clean(gw)


def test_admin_api_rejects_unstorable_input_with_4xx(gw: Gw) -> None:
    def call(method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
        return gw.admin_call(method, f"/admin/v1{path}", raw=raw, body=body, headers=gw.admin.headers)

    app_id = gw.playground_app_id
    assert_clear_4xx(call("POST", "/apps", {"name": "nul\u0000name", "platform": "ios"}), 400)
    assert_clear_4xx(call("POST", "/apps", {"name": "x", "platform": "ios", "store_url": "https://x/\u0000"}), 400)
    assert_clear_4xx(call("POST", f"/apps/{app_id}/links", {"campaign": "c\u0000"}), 400)
    assert_clear_4xx(call("POST", "/apps", raw=b"[" * 10_000), 400)
    assert_clear_4xx(call("POST", "/apps", {"name": "x", "platform": "ios", "extra": 1}), 400, field="extra")
    for path in ("/apps/%00", "/apps/%00/integrations", "/apps/%00/integrations/meta", "/skan/postbacks/%00",
                 "/apps/app_unknown", "/apps/" + "x" * 3000):
        status, _, _ = call("GET", path)
        assert 400 <= status < 500, (path, status)
    for query in ("app_id=%00", "event_id=%00", "network=%00", "status=%00", "limit=x"):
        status, _, _ = call("GET", f"/audit?{query}")
        assert status in (200, 400), (query, status)
    assert call("GET", f"/apps/{app_id}/attribution?device_id=%00")[0] in (400, 404)
    schema = {"schema_id": "s1", "valid_from": "0001-01-01T00:00:00+14:00", "mode": "engagement",
              "event_name": "level"}
    assert_clear_4xx(call("PUT", f"/apps/{app_id}/skan/schema", schema), 400, field="valid_from")
    assert_clear_4xx(call("PUT", f"/apps/{app_id}/skan/schema", {**schema, "valid_from": "2024-01-01T00:00:00Z",
                                                                 "schema_id": "s" * 101}), 400)
    # JSON columns keep a NUL escaped: storable.
    assert call("PUT", f"/apps/{app_id}/integrations/meta", {"credentials": {"access_token": "\u0000"},
                                                             "settings": {"dataset_id": "\u0000"}})[0] == 200


def test_header_bytes_that_are_not_utf8_do_not_crash_the_gateway(gw: Gw) -> None:
    """http.client sends str headers as Latin-1: é and ÿ arrive as bytes that are not UTF-8. Was a 500."""
    agent = {"User-Agent": "Agent/\u00e9\u00ff"}
    m = marker()
    status, _, _ = gw.call("POST", "/v1/events", body=event(m), headers={**gw.key_headers, **agent})
    assert status == 202
    status, _, _ = gw.call("POST", "/v1/clicks", body={"click_id": marker()}, headers={**gw.key_headers, **agent})
    assert status == 202
    status, _, _ = gw.call("GET", f"/c/{gw.link_id}?click_id={marker()}", headers=agent)
    assert status == 302
    [record] = [r for r in read_topic(gw.bootstrap, EVENTS_RAW, lambda rs: any(r["value"]["event_id"] == m for r in rs))
                if r["value"]["event_id"] == m]
    assert record["value"]["device"]["user_agent"].startswith("Agent/\ufffd")


# --- schemathesis ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["gateway", "admin"])  # in this order: ingest first (see below)
def test_schemathesis_finds_no_server_error_and_no_contract_violation(gw: Gw, service: str) -> None:
    """Each service against its own document, at its own base, within its share of FUZZ_SECONDS."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    base = gw.base_of(service)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    started = time.monotonic()
    deadline = started + FUZZ_SECONDS * FUZZ_SHARE[service]
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = {}
    accepted_ids: set[str] = set()

    def auth_for(path: str) -> dict[str, str]:
        if path.startswith("/admin/"):
            return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        if path.startswith("/v1/webhooks/revenuecat/"):
            return {"Authorization": RC_AUTHORIZATION}
        return {"Authorization": f"Bearer {gw.app['live_key']}"}

    def pinned(path: str) -> dict[str, str]:
        values = {"app_id": gw.playground_app_id if path.startswith("/admin/") else gw.app["app_id"],
                  "link_id": gw.link_id}
        return {name: value for name, value in values.items() if "{" + name + "}" in path}

    def note_event_ids(case: Any, status: int) -> None:
        body = case.body if isinstance(case.body, dict) else {}
        items = body.get("events") if "events" in body and "event_id" not in body else [body]
        ids = {str(item["event_id"]).strip() for item in items or [] if isinstance(item, dict) and "event_id" in item}
        if status < 300:
            accepted_ids.update(ids)
        elif 400 <= status < 500:
            gw.markers[EVENTS_RAW].update(ids)

    def run(operation: Any, mode: GenerationMode, path_parameters: dict[str, str]) -> None:
        label = f"{operation.label} [{mode.value}{' pinned' if path_parameters else ''}]"
        headers = auth_for(operation.path)

        def exercise(case: Any) -> None:
            if time.monotonic() > deadline or len(failures) > 40:
                return
            case.path_parameters = {**(case.path_parameters or {}), **path_parameters}
            response = None
            try:
                response = case.call(base_url=base, headers=headers, timeout=30)
                statuses.setdefault(label, Counter())[response.status_code] += 1
                if operation.path == "/v1/events":
                    note_event_ids(case, response.status_code)
                case.validate_response(response, checks=checks, headers=headers)
            except (Exception, FailureGroup) as exc:
                problems = [str(e).splitlines()[0] for e in getattr(exc, "exceptions", [exc])]
                answer = f"{response.status_code} {response.text[:300]!r}" if response is not None else "no answer"
                failures.append(f"{label}: {'; '.join(problems)}\n    answer: {answer}\n"
                                f"    request: {case.as_curl_command(headers=headers)[:600]}")

        strategies = [(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None),
                       FUZZ_EXAMPLES)]
        if mode is GenerationMode.POSITIVE:  # the document's own examples, once each
            strategies += [(strategy, 1) for strategy in operation.get_strategies_from_examples(fill_missing=True)]
        for strategy, examples in strategies:
            fuzz = settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                            derandomize=not FUZZ_RANDOM, suppress_health_check=list(HealthCheck))(
                given(case=strategy)(exercise))
            with contextlib.suppress(Unsatisfiable):  # nothing to negate (no parameters, no body)
                fuzz()

    operations = operations_of(schema)
    # The gateway's document is fuzzed first (parametrize's order): the admin fuzzer works on its own app, but
    # keep the ingest setup untouched while the ingest routes are fuzzed.
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:
            if operation.label in NOT_FUZZED:
                continue
            pins = {} if operation.label in NOT_PINNED else pinned(operation.path)
            run(operation, mode, pins)
            if pins and mode is GenerationMode.POSITIVE:
                run(operation, mode, {})  # random ids too: 404s must be JSON and documented

    summary = "\n".join(f"  {label}: {dict(counter)}" for label, counter in statuses.items())
    print(f"schemathesis answers by operation ({service}, {time.monotonic() - started:.1f} s):\n{summary}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
    answered = sum(sum(counter.values()) for counter in statuses.values())
    assert answered >= 100, summary  # not starved by the limit
    if service == "gateway":
        assert gw.markers[EVENTS_RAW] - accepted_ids, "the fuzzer produced no rejected event"
        gw.markers[EVENTS_RAW] -= accepted_ids
    events_clean(gw)
