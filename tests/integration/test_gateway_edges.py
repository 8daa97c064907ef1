"""The HTTP edges of the gateway and of the admin service, at the real processes (real broker; PostgreSQL, or
SQLite where it is the point).

What used to be a 500 or a connection held forever is now a clear answer: a body not valid in its
Content-Encoding is a JSON 400 (at either service); an admin call while the database is read-only, locked or
down is a 503 with Retry-After; the admin token counts only after "Bearer "; a client that sends half a request
to the gateway is dropped after APPREFER_GATEWAY_HEADER_TIMEOUT_SECONDS / APPREFER_GATEWAY_BODY_TIMEOUT_SECONDS;
and every answer, 5xx included, is counted in apprefer_http_requests_total.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import selectors
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from sqlalchemy.engine import make_url

from services.admin.api.apps import AppIn
from services.admin.store import AdminStore
from shared.db.migrate import upgrade
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.topics import create_topics
from tests.support.pipeline import (
    ADMIN_TOKEN,
    SECRET_KEY,
    AdminApi,
    ServiceProcess,
    http_call,
    service_env,
    start_admin,
    start_edge,
)
from tests.support.postgres import create_database, drop_database

RC_AUTHORIZATION = "Bearer rc-edge-secret"
HEAD_TIMEOUT = 2.0  # seconds, short for the test (the defaults are 10 and 30)
BODY_TIMEOUT = 2.0
MARGIN = 3.0  # scheduling slack on a loaded machine

# Bodies that say Content-Encoding: X and are not X.
NOT_GZIP = b"this is not gzip at all"
NOT_DEFLATE = b"\x78\x9c this is not deflate"
CORRUPT_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 40


SERVICES = ("gateway", "admin")


@dataclass
class Edge:
    base: str  # the gateway's
    process: ServiceProcess  # the gateway
    admin: AdminApi  # at the admin service's base
    admin_process: ServiceProcess
    app: dict[str, Any]
    log_checked_up_to: dict[str, int] = field(default_factory=dict)

    @property
    def key_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app['live_key']}"}

    def base_of(self, service: str) -> str:
        return self.admin.base if service == "admin" else self.base

    def body_routes(self, service: str = "gateway") -> list[tuple[str, str, dict[str, str]]]:
        """Every route of `service` (gateway or admin) that reads a body, with the credentials that get it read."""
        app_id, admin = self.app["app_id"], self.admin.headers
        if service == "admin":
            return [("POST", "/admin/v1/apps", admin), ("POST", f"/admin/v1/apps/{app_id}/keys", admin),
                    ("POST", f"/admin/v1/apps/{app_id}/links", admin),
                    ("PUT", f"/admin/v1/apps/{app_id}/integrations/meta", admin),
                    ("PUT", f"/admin/v1/apps/{app_id}/skan/schema", admin)]
        return [("POST", "/v1/events", self.key_headers), ("POST", "/v1/clicks", self.key_headers),
                ("POST", f"/v1/webhooks/revenuecat/{app_id}", {"Authorization": RC_AUTHORIZATION}),
                ("POST", "/v1/skan/postbacks", {}), ("POST", "/.well-known/skadnetwork/report-attribution/", {})]

    def new_log(self, service: str = "gateway") -> str:
        """What `service` (gateway or admin) logged since the last call."""
        process = self.admin_process if service == "admin" else self.process
        text = process.log_path.read_text(errors="replace")
        fresh = text[self.log_checked_up_to.get(service, 0):]
        self.log_checked_up_to[service] = len(text)
        return fresh


@pytest.fixture(scope="module")
def edge(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    database_url = create_database(postgres_server_url, f"gwedge_{uuid.uuid4().hex}")
    upgrade(database_url)
    create_topics(module_bootstrap, partitions=1, replication=1)
    env = service_env(module_bootstrap, database_url, APPREFER_GATEWAY_HEADER_TIMEOUT_SECONDS=str(HEAD_TIMEOUT),
                      APPREFER_GATEWAY_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT))
    running = start_edge(env, tmp_path_factory.mktemp("gateway-edges"))
    try:
        admin = running.admin
        app = admin.new_app()
        admin.call("PUT", f"/apps/{app['app_id']}/integrations/revenuecat",
                   {"credentials": {"authorization": RC_AUTHORIZATION}})
        yield Edge(running.base, running.gateway, admin, running.admin_service, app)
        running.assert_alive()
    finally:
        running.terminate()


def event() -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "event_name": "open", "event_time": int(time.time()),
            "device": {"device_id": "dev-edge"}}


def answers_counted(base: str) -> dict[tuple[str, str], float]:
    """apprefer_http_requests_total by (route, status), as /metrics shows it."""
    status, _, body = http_call("GET", f"{base}/metrics")
    assert status == 200
    counted: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "apprefer_http_requests_total":
                counted[(sample.labels["route"], sample.labels["status"])] = sample.value
    return counted


def counted_since(before: dict[tuple[str, str], float], base: str) -> dict[tuple[str, str], float]:
    after = answers_counted(base)
    return {label: value - before.get(label, 0.0) for label, value in after.items()
            if value != before.get(label, 0.0) and label[0] != "/metrics"}


def assert_json_error(answer: tuple[int, dict[str, str], Any], status: int, error: str) -> dict[str, Any]:
    code, headers, payload = answer
    assert code == status, (code, payload)
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert isinstance(payload, dict) and payload["error"] == error and payload["message"], payload
    return payload


# --- Content-Encoding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_body_not_valid_in_its_content_encoding_is_400_on_every_body_route(edge: Edge, service: str) -> None:
    base = edge.base_of(service)
    before = answers_counted(base)
    sent = 0
    for method, path, headers in edge.body_routes(service):
        for encoding, raw in (("gzip", NOT_GZIP), ("gzip", CORRUPT_GZIP), ("deflate", NOT_DEFLATE)):
            answer = http_call(method, f"{base}{path}", raw=raw,
                               headers={**headers, "Content-Encoding": encoding})
            payload = assert_json_error(answer, 400, "invalid_body")
            assert payload["field"] == "body" and encoding in payload["message"], (path, payload)
            assert answer[1].get("connection") == "close"  # the parser cannot go on after a broken body
            sent += 1
    counted = counted_since(before, base)
    assert sum(v for (_, status), v in counted.items() if status == "400") == sent, counted
    assert not any(status.startswith("5") for _, status in counted), counted
    # aiohttp used to log each of these as an unhandled exception (its lingering read re-raised the error).
    log = edge.new_log(service)
    assert "Unhandled exception" not in log and "Traceback" not in log, log[-2000:]


def test_valid_gzip_and_deflate_bodies_are_accepted(edge: Edge) -> None:
    for encoding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        raw = compress(json.dumps({"events": [event(), event()]}).encode())
        status, _, answer = http_call("POST", f"{edge.base}/v1/events", raw=raw,
                                      headers={**edge.key_headers, "Content-Encoding": encoding})
        assert (status, answer) == (202, {"accepted": 2})
    # A compressed body is bounded by what it decompresses to, not by its own size.
    bomb = gzip.compress(json.dumps({**event(), "pad": "x" * 2_000_000}).encode())
    assert len(bomb) < 100_000
    status, _, answer = http_call("POST", f"{edge.base}/v1/events", raw=bomb,
                                  headers={**edge.key_headers, "Content-Encoding": "gzip"})
    assert (status, answer["error"]) == (413, "too_large")


@pytest.mark.parametrize("service", SERVICES)
def test_an_encoding_the_service_cannot_decode_is_a_json_400_even_before_any_route(edge: Edge, service: str) -> None:
    base = edge.base_of(service)
    before = answers_counted(base)
    for method, path, headers in [*edge.body_routes(service)[:2], ("GET", "/healthz", {})]:
        for encoding in ("br", "zstd"):
            raw = b"\x0b\x02\x80{}\x03" if method != "GET" else None
            answer = http_call(method, f"{base}{path}", raw=raw, headers={**headers, "Content-Encoding": encoding})
            assert assert_json_error(answer, 400, "unsupported_encoding")["field"] == "body"
    assert counted_since(before, base) == {("unparsed", "400"): 6}
    assert "Traceback" not in edge.new_log(service)


# --- the admin token ----------------------------------------------------------------------------------------


def test_the_admin_api_takes_its_token_only_after_bearer(edge: Edge) -> None:
    url = f"{edge.admin.base}/admin/v1/apps"
    for value in (ADMIN_TOKEN, f"Token {ADMIN_TOKEN}", f"Basic {ADMIN_TOKEN}", "Bearer", f"Bearer{ADMIN_TOKEN}",
                  f"{ADMIN_TOKEN} {ADMIN_TOKEN}", "Bearer wrong"):
        assert_json_error(http_call("GET", url, headers={"Authorization": value}), 401, "unauthorized")
        assert_json_error(http_call("POST", url, {"name": "x", "platform": "ios"}, {"Authorization": value}),
                          401, "unauthorized")
    for value in (f"Bearer {ADMIN_TOKEN}", f"bearer {ADMIN_TOKEN}", f"Bearer   {ADMIN_TOKEN}"):
        assert http_call("GET", url, headers={"Authorization": value})[0] == 200


# --- slow clients -------------------------------------------------------------------------------------------


@dataclass
class SlowClient:
    kind: str
    sock: socket.socket
    trickle: bytes = b""  # sent one byte at a time while the connection lasts
    received: bytes = b""
    closed_after: float | None = None


def test_slow_heads_and_bodies_are_dropped_in_time_while_normal_requests_go_on(edge: Edge) -> None:
    host, port = edge.base.removeprefix("http://").split(":")
    key = edge.app["live_key"]
    head = f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n"
    kinds: list[tuple[str, int, bytes, bytes]] = [  # (kind, how many, sent at once, trickled)
        ("silent", 50, b"", b""),
        ("half request line", 50, b"POST /v1/ev", b""),
        ("headers without their end", 50, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n", b""),
        ("trickled head", 10, b"P", b"OST /v1/events HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"y" * 200),
        ("part of the body", 50, head.encode() + b'{"event_id": "', b""),
        ("trickled body", 10, head.encode(), b'{"event_id": "' + b"z" * 500),
        ("part of the body, not read", 10,
         head.replace(f"Bearer {key}", "Bearer pk_live_unknown").encode() + b"{", b""),
    ]
    clients: list[SlowClient] = []
    started = time.monotonic()
    try:
        for kind, count, sent, trickle in kinds:
            for _ in range(count):
                sock = socket.create_connection((host, int(port)), timeout=5)
                if sent:
                    sock.sendall(sent)
                sock.setblocking(False)
                clients.append(SlowClient(kind, sock, trickle))
        opened = time.monotonic() - started

        # A well-behaved client is served at once meanwhile.
        normal_started = time.monotonic()
        status, _, answer = http_call("POST", f"{edge.base}/v1/events", event(), edge.key_headers)
        assert (status, answer) == (202, {"accepted": 1})
        assert time.monotonic() - normal_started < 1.5

        watch(clients, started, deadline=opened + max(HEAD_TIMEOUT, BODY_TIMEOUT) + MARGIN)
    finally:
        for client in clients:
            client.sock.close()

    for kind, *_ in kinds:
        closed = [c.closed_after for c in clients if c.kind == kind and c.closed_after is not None]
        print(f"{kind}: {len(closed)} closed, after {min(closed, default=0):.2f}-{max(closed, default=0):.2f} s")
    still_open = [c.kind for c in clients if c.closed_after is None]
    assert not still_open, f"{len(still_open)} of {len(clients)} still open: {sorted(set(still_open))}"
    for client in clients:
        assert client.closed_after is not None
        # Dropped by the deadline, not refused at once (a half request is not an error by itself).
        assert HEAD_TIMEOUT - 0.5 <= client.closed_after <= opened + HEAD_TIMEOUT + MARGIN, (
            client.kind, client.closed_after)
        if client.kind == "part of the body":
            assert client.received.startswith(b"HTTP/1.1 408 "), client.received[:200]
            assert b'"error":"timeout"' in client.received
        elif client.kind == "trickled body":  # its bytes sent after the close may reset the 408 away
            assert client.received in (b"",) or client.received.startswith(b"HTTP/1.1 408 "), client.received[:200]
        elif client.kind == "part of the body, not read":
            assert client.received.startswith(b"HTTP/1.1 401 "), client.received[:200]
        else:  # nothing to answer: there was no request yet
            assert client.received == b"", (client.kind, client.received[:200])
    assert http_call("GET", f"{edge.base}/healthz")[0] == 200
    log = edge.new_log()
    assert "Traceback" not in log, log[-2000:]


def watch(clients: list[SlowClient], started: float, deadline: float) -> None:
    """Reads every client's socket until the server closes it or `deadline` (seconds after `started`) passes,
    sending each trickling client one more byte every 0.2 s."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    next_trickle = 0.0
    try:
        while selector.get_map() and time.monotonic() - started < deadline:
            now = time.monotonic() - started
            if now >= next_trickle:
                next_trickle = now + 0.2
                for client in clients:
                    if client.trickle and client.closed_after is None:
                        try:
                            client.sock.send(client.trickle[:1])
                            client.trickle = client.trickle[1:]
                        except OSError:  # BrokenPipe / ConnectionReset: the server has closed it
                            close(selector, client, started)
            for key, _ in selector.select(timeout=0.05):
                client = key.data
                try:
                    data = client.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:  # reset by the server (it closed with our bytes unread)
                    data = b""
                if data:
                    client.received += data
                else:
                    close(selector, client, started)
    finally:
        selector.close()


def close(selector: selectors.BaseSelector, client: SlowClient, started: float) -> None:
    if client.closed_after is None:
        client.closed_after = time.monotonic() - started
        selector.unregister(client.sock)


def test_an_idle_kept_alive_connection_is_not_taken_for_a_slow_head(edge: Edge) -> None:
    host, port = edge.base.removeprefix("http://").split(":")
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(HEAD_TIMEOUT + 1.0)  # idle between requests: keepalive_timeout's business, not the head's
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        # The next request's first bytes start its head's clock.
        sock.sendall(b"GET /heal")
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert HEAD_TIMEOUT - 0.5 <= time.monotonic() - started <= HEAD_TIMEOUT + MARGIN


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(4096)
    return data


# --- the database unavailable -------------------------------------------------------------------------------


def test_admin_writes_are_503_with_retry_after_while_sqlite_is_read_only(module_bootstrap: str,
                                                                         tmp_path: Path) -> None:
    path = tmp_path / "apprefer.db"
    writable = f"sqlite:///{path}"
    upgrade(writable)
    engine = make_engine(writable)
    seeded = AdminStore(make_sessionmaker(engine), SECRET_KEY).create_app(
        AppIn(name="seeded", platform="ios").model_dump())
    engine.dispose()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"  # as a read-only volume or file would be
    admin_service, admin_base = start_admin(service_env(module_bootstrap, read_only), tmp_path)
    try:
        admin = AdminApi(admin_base)
        before = answers_counted(admin_base)
        writes = [("POST", "/apps", {"name": "x", "platform": "ios"}),
                  ("POST", f"/apps/{seeded['app_id']}/keys", {"mode": "live"}),
                  ("PUT", f"/apps/{seeded['app_id']}/integrations/meta",
                   {"settings": {"dataset_id": "1"}, "credentials": {"access_token": "t"}})]
        for method, path_, body in writes:
            answer = http_call(method, f"{admin_base}/admin/v1{path_}", body, admin.headers)
            assert_json_error(answer, 503, "unavailable")
            assert answer[1]["retry-after"] == "5"
        # Reads go on.
        assert [a["app_id"] for a in admin.call("GET", "/apps")["apps"] if not a["test_app"]] == [seeded["app_id"]]
        counted = counted_since(before, admin_base)
        assert counted[("/admin/v1/apps", "503")] == 1 and ("/admin/v1/apps", "500") not in counted, counted
        admin_service.assert_alive()
    finally:
        admin_service.terminate()


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_postgres_read_only_locked_or_down_gives_503_on_admin_calls_and_every_answer_is_counted(
    postgres_server_url: str, module_bootstrap: str, tmp_path: Path
) -> None:
    name = f"gwdown_{uuid.uuid4().hex}"
    database_url = create_database(postgres_server_url, name)
    upgrade(database_url)
    database = sql.Identifier(name)

    def on_server(statement: sql.Composed) -> None:
        with psycopg.connect(_libpq(postgres_server_url), autocommit=True) as conn:
            conn.execute(statement)

    def reconnect_services() -> None:
        """Ends the gateway's and the admin service's sessions: their pools reconnect, under the database's new
        settings."""
        on_server(sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {} "
                          "AND pid <> pg_backend_pid()").format(sql.Literal(name)))

    running = start_edge(service_env(module_bootstrap, database_url), tmp_path)
    base, admin = running.base, running.admin
    app_fields = {"name": "x", "platform": "ios"}
    new_app = ("POST", f"{admin.base}/admin/v1/apps", app_fields, admin.headers)
    try:
        app = admin.new_app()
        before, admin_before = answers_counted(base), answers_counted(admin.base)
        unavailable = 0

        def expect_503(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> None:
            nonlocal unavailable
            answer = http_call(method, url, body, headers, timeout=20)
            assert_json_error(answer, 503, "unavailable")
            assert answer[1]["retry-after"] == "5"
            unavailable += 1

        # Read-only, as a standby after a failover is: 25006 read_only_sql_transaction.
        on_server(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(database))
        reconnect_services()
        expect_503(*new_app)
        assert admin.call("GET", f"/apps/{app['app_id']}")["app_id"] == app["app_id"]  # reads go on
        on_server(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(database))
        reconnect_services()
        admin.call("POST", "/apps", app_fields, expect=201)

        # Locked past the lock timeout (PostgreSQL's busy timeout): 55P03 lock_not_available.
        on_server(sql.SQL("ALTER DATABASE {} SET lock_timeout = '300ms'").format(database))
        reconnect_services()
        with psycopg.connect(_libpq(database_url)) as holder:
            holder.execute("LOCK TABLE apps IN EXCLUSIVE MODE")  # reads allowed, writes wait
            started = time.monotonic()
            expect_503(*new_app)
            assert time.monotonic() - started < 5
            assert admin.call("GET", "/apps")["apps"]
            holder.rollback()
        admin.call("POST", "/apps", app_fields, expect=201)

        # Down: no connection is accepted. Admin calls and ingest (an unknown key's look-up needs the database)
        # are 503 + Retry-After alike, and counted.
        on_server(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
        reconnect_services()
        expect_503(*new_app)
        expect_503("GET", f"{admin.base}/admin/v1/apps", None, admin.headers)
        for _ in range(3):
            expect_503("POST", f"{base}/v1/events", event(), {"Authorization": f"Bearer pk_live_{uuid.uuid4().hex}"})
        on_server(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
        admin.call("POST", "/apps", app_fields, expect=201)

        counted, admin_counted = counted_since(before, base), counted_since(admin_before, admin.base)
        assert admin_counted[("/admin/v1/apps", "503")] == unavailable - 3, admin_counted
        assert ("/admin/v1/apps", "500") not in admin_counted, admin_counted
        assert counted[("/v1/events", "503")] == 3 and ("/v1/events", "500") not in counted, counted
        running.assert_alive()
    finally:
        with contextlib.suppress(Exception):
            on_server(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
        running.terminate()
        with contextlib.suppress(Exception):
            drop_database(postgres_server_url, name)
