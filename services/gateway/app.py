"""The ingest gateway: authenticate, validate, hash personal data, produce, answer after the ack.

Consumes: HTTP requests. Produces: events.raw (key app_id:device_id), clicks.raw (key click_key).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.domain.skan.postback_input import SourceRateLimiter, parse_postback, transaction_key
from services.gateway import openapi as docs
from services.gateway import revenuecat
from services.gateway.click_input import click_record
from services.gateway.event_input import event_field_prefix, parse_events, raw_event_record
from services.gateway.store import GatewayStore, KeyOwner, LinkTarget
from shared.avro import AvroCodec
from shared.crypto import secrets_equal
from shared.errors import InputError
from shared.kafka.producer import AsyncProducer, DeliveryFailed, ProducerQueueFull, RecordRefused
from shared.kafka.records import OutRecord
from shared.kafka.topics import CLICKS_RAW, EVENTS_RAW, SKAN_RAW
from shared.metrics import EVENTS_ACCEPTED, SKAN_INTAKE
from shared.openapi import HEALTHZ, METRICS, OPENAPI, build_document, documented, readiness_operation
from shared.runtime import now_ms
from shared.web import (
    LabelledCounter,
    answers_counted,
    check_json_depth,
    error_response,
    json_object_body,
    json_response,
    storable_text,
)

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"


class TtlCache:
    """A small read-through cache for API keys and links: the hot path must not hit the DB."""

    def __init__(self, ttl: float, negative_ttl: float = 2.0, max_entries: int = 100_000) -> None:
        self._ttl, self._negative_ttl, self._max = ttl, negative_ttl, max_entries
        self._entries: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, load: Callable[[str], Any]) -> Any:
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await asyncio.to_thread(load, key)
        if len(self._entries) >= self._max:
            self._entries.clear()
        # Unknown keys are cached briefly so a flood of bad keys cannot hammer the database.
        self._entries[key] = (now + (self._ttl if value is not None else self._negative_ttl), value)
        return value


_EVENTS_ACCEPTED = LabelledCounter(EVENTS_ACCEPTED)


class Gateway:
    def __init__(self, *, store: GatewayStore, producer: AsyncProducer, codec: AvroCodec,
                 max_batch: int, key_cache_seconds: float,
                 readiness: Callable[[], Awaitable[None]] | None = None,
                 max_record_bytes: int = 1_000_000 - 65_536,
                 skan_max_body_bytes: int = 16_384, skan_unknown_app_rate_per_minute: float = 60.0) -> None:
        self._skan_max_body = skan_max_body_bytes
        self._skan_unknown_app_rate = SourceRateLimiter(skan_unknown_app_rate_per_minute)
        # True for an apple_app_id some app has, None (cached only briefly, like unknown keys) otherwise.
        self._apple_app_ids = TtlCache(key_cache_seconds)
        self._skan_intake = LabelledCounter(SKAN_INTAKE)
        self._store = store
        self._producer = producer
        self._codec = codec
        self._max_batch = max_batch
        self._max_record_bytes = max_record_bytes
        self._keys = TtlCache(key_cache_seconds)
        self._links = TtlCache(key_cache_seconds)
        self._webhook_auth = TtlCache(min(key_cache_seconds, 5.0))
        self._readiness = readiness
        self._document: dict[str, Any] | None = None

    async def _authenticate(self, request: web.Request) -> KeyOwner | None:
        token = request.headers.get("Authorization", "")
        if not token.startswith("Bearer pk_") or not storable_text(token):
            return None
        owner: KeyOwner | None = await self._keys.get(token[7:].strip(), self._store.key_owner)
        return owner

    def _too_large(self, records: list[OutRecord], field_of: Callable[[int], str] | None = None
                   ) -> web.Response | None:
        """413 for a record that would leave later stages too little room under the broker's
        record limit (they add the attribution and headers): refused here, before anything is
        produced, rather than dead-lettered downstream."""
        for index, record in enumerate(records):
            size = len(record.value) + len(record.key or b"")
            if size > self._max_record_bytes:
                field = (field_of(index) if field_of else "") or "body"
                return error_response(
                    413, "too_large", f"the event's record would be {size:,} bytes; at most "
                    f"{self._max_record_bytes:,} are accepted (APPREFER_KAFKA_MAX_RECORD_BYTES less "
                    "APPREFER_GATEWAY_RECORD_MARGIN_BYTES)", field)
        return None

    async def _produce(self, records: list[OutRecord], field_of: Callable[[int], str] | None = None
                       ) -> web.Response | None:
        """None when the broker acknowledged every record, else the error response to send. `field_of(i)`
        names record i's field in an error (only called for one)."""
        too_large = self._too_large(records, field_of)
        if too_large is not None:
            return too_large
        try:
            await self._producer.send(records)
        except RecordRefused as exc:
            # The broker's limit is below ours (a cluster with a smaller message.max.bytes).
            log.error("broker refused a record", extra={"error": str(exc)})
            return error_response(413, "too_large", "the broker refused the record as too large or invalid", "body")
        except ProducerQueueFull:
            return web.Response(status=503, headers={"Retry-After": RETRY_AFTER_SECONDS},
                                body=b'{"error":"overloaded","message":"try again shortly"}',
                                content_type="application/json")
        except DeliveryFailed as exc:
            log.error("broker did not acknowledge", extra={"error": str(exc)})
            return web.Response(status=503, headers={"Retry-After": RETRY_AFTER_SECONDS},
                                body=b'{"error":"unavailable","message":"events not stored; retry"}',
                                content_type="application/json")
        return None

    @documented(docs.EVENTS)
    async def post_events(self, request: web.Request) -> web.Response:
        owner = await self._authenticate(request)
        if owner is None:
            return error_response(401, "unauthorized", "missing or unknown API key")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(400, "invalid_json", "body is not valid JSON", "body")
        received_at = now_ms()
        ip = request.remote
        user_agent = user_agent_of(request)
        try:
            events, prefix = parse_events(body, self._max_batch)  # also refuses JSON nested too deep
            records = []
            for index, event in enumerate(events):
                raw = raw_event_record(
                    event, app_id=owner.app_id, sandbox=owner.sandbox, received_at_ms=received_at,
                    request_ip=ip, request_user_agent=user_agent, field=event_field_prefix(prefix, index),
                    max_revenue_amount=owner.max_revenue_amount,
                )
                records.append(OutRecord(
                    topic=EVENTS_RAW, key=f"{owner.app_id}:{raw['device']['device_id']}".encode(),
                    value=self._codec.encode("apprefer.RawEvent", raw),
                ))
        except InputError as exc:
            return json_response(exc.as_json(), 400)
        failure = await self._produce(records, lambda index: event_field_prefix(prefix, index))
        if failure is not None:
            return failure
        _EVENTS_ACCEPTED.inc("sandbox" if owner.sandbox else "live", amount=len(records))
        return json_response({"accepted": len(records)}, 202)

    @documented(docs.TRACKING_LINK)
    async def click_redirect(self, request: web.Request) -> web.Response:
        link_id = request.match_info["link_id"]
        link: LinkTarget | None = (await self._links.get(link_id, self._store.link_target)
                                   if storable_text(link_id) else None)
        if link is None:
            return error_response(404, "not_found", f"unknown link {link_id}")
        try:
            click = click_record(
                request.query, app_id=link.app_id, link_id=link_id, link_network=link.network,
                link_campaign=link.campaign, ip=request.remote,
                user_agent=user_agent_of(request), clicked_at_ms=now_ms(), entry="tracking_link",
            )
        except InputError as exc:
            return json_response(exc.as_json(), 400)
        failure = await self._produce([self._click_out(click)])
        if failure is not None:
            return failure
        if not link.store_url:
            return json_response({"click_key": click["click_key"], "message": "link has no store_url"}, 200)
        return web.Response(status=302, headers={"Location": store_url_with_click(link.store_url, click)})

    @documented(docs.CLICK)
    async def post_click(self, request: web.Request) -> web.Response:
        owner = await self._authenticate(request)
        if owner is None:
            return error_response(401, "unauthorized", "missing or unknown API key")
        body = await json_object_body(request)
        if isinstance(body, web.Response):
            return body
        params = dict(body)
        ip, user_agent = params.pop("ip", None), params.pop("user_agent", None)
        link_id = params.pop("link_id", None)
        network, campaign = params.pop("network", None), params.pop("campaign", None)
        try:
            if link_id is not None:
                if not isinstance(link_id, str) or not storable_text(link_id):
                    raise InputError("link_id", "unknown link for this app")
                link = await self._links.get(link_id, self._store.link_target)
                if link is None or link.app_id != owner.app_id:
                    raise InputError("link_id", "unknown link for this app")
                network, campaign = network or link.network, campaign or link.campaign
            for name, value in (("ip", ip), ("user_agent", user_agent), ("network", network),
                                ("campaign", campaign)):
                if value is not None and not isinstance(value, str):
                    raise InputError(name, "must be a string")
            click = click_record(
                params, app_id=owner.app_id, link_id=link_id, link_network=network, link_campaign=campaign,
                ip=ip, user_agent=user_agent, clicked_at_ms=now_ms(), sandbox=owner.sandbox,
            )
        except InputError as exc:
            return json_response(exc.as_json(), 400)
        failure = await self._produce([self._click_out(click)])
        if failure is not None:
            return failure
        return json_response({"accepted": 1, "click_key": click["click_key"]}, 202)

    @documented(docs.REVENUECAT)
    async def revenuecat_webhook(self, request: web.Request) -> web.Response:
        """RevenueCat retries anything but 200 (five times, hours apart): answer 200 as soon as the
        broker has the record, 4xx only for what a retry cannot fix."""
        app_id = request.match_info["app_id"]
        given = request.headers.get("Authorization", "")
        expected: str | None = None
        if storable_text(app_id) and storable_text(given):
            expected = await self._webhook_auth.get(app_id, self._store.webhook_authorization)
        if expected is None or not secrets_equal(given, expected):
            return error_response(401, "unauthorized", "wrong or missing Authorization for this app's webhook")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(400, "invalid_json", "body is not valid JSON", "body")
        try:
            check_json_depth(body)
            event = revenuecat.webhook_event(body)
            raw = revenuecat.raw_event(event, app_id=app_id, received_at_ms=now_ms())
        except InputError as exc:
            return json_response(exc.as_json(), 400)
        record = OutRecord(topic=EVENTS_RAW, key=f"{app_id}:{raw['device']['device_id']}".encode(),
                           value=self._codec.encode("apprefer.RawEvent", raw))
        failure = await self._produce([record])
        if failure is not None:
            return failure
        _EVENTS_ACCEPTED.inc("revenuecat")
        return json_response({"ok": True, "event_id": raw["event_id"]}, 200)

    @documented(docs.SKAN_POSTBACK)
    async def skan_postback(self, request: web.Request) -> web.Response:
        """Ad networks (enriched, or Apple's body re-sent by redirect) and iOS's own copy. 200 for
        every well-formed postback within the limits, duplicates included: the device retries for days otherwise.
        Anyone may post here, so intake is bounded: a body limit of its own (real postbacks are under 4 KB),
        never read past, and postbacks for an app id no app has are rate-limited per source address."""
        source = "apple" if request.path.startswith("/.well-known/") else "network"
        limit = self._skan_max_body
        declared = request.content_length
        body = b""
        if declared is None or declared <= limit:
            # A chunked body declares no length: read one byte past the limit, never more.
            while len(body) <= limit and (chunk := await request.content.read(limit + 1 - len(body))):
                body += chunk
        if len(body) > limit or (declared is not None and declared > limit):
            self._skan_intake.inc("too_large")
            return error_response(413, "too_large", f"body over {limit} bytes", "body")
        try:
            postback = parse_postback(body, request.query)
            check_json_depth(postback)
            # An AdAttributionKit postback (jws-string) passes parse_postback without a transaction-id.
            transaction_id, sequence_index = transaction_key(postback)
        except InputError as exc:
            self._skan_intake.inc("invalid")
            return error_response(400, "invalid_postback", exc.message, exc.field)
        apple_app_id = str(postback.get("app-id"))
        known = False  # an id longer than the column, or one PostgreSQL cannot compare, is no app's
        if len(apple_app_id) <= 20 and storable_text(apple_app_id):
            known = bool(await self._apple_app_ids.get(
                apple_app_id, lambda app_id: self._store.knows_apple_app_id(app_id) or None))
        if not known:
            wait = self._skan_unknown_app_rate.take(request.remote or "")
            if wait:
                self._skan_intake.inc("rate_limited")
                refused = error_response(429, "rate_limited", "too many postbacks for app ids no app has from "
                                                              "this address; retry after Retry-After seconds")
                refused.headers["Retry-After"] = str(math.ceil(wait))
                return refused
        record = {
            "transaction_id": transaction_id, "sequence_index": sequence_index, "source": source,
            "postback_json": orjson.dumps(postback).decode(), "raw_body": body.decode("utf-8", "replace"),
            "received_at_ms": now_ms(),
        }
        failure = await self._produce([OutRecord(topic=SKAN_RAW, key=transaction_id.encode(),
                                                 value=self._codec.encode("apprefer.SkanPostback", record))])
        if failure is not None:
            return failure
        _EVENTS_ACCEPTED.inc("skan")
        self._skan_intake.inc("accepted" if known else "unknown_app")
        return json_response({"ok": True}, 200)

    def _click_out(self, click: dict[str, Any]) -> OutRecord:
        return OutRecord(topic=CLICKS_RAW, key=click["click_key"].encode(),
                         value=self._codec.encode("apprefer.Click", click))

    @documented(docs.SKAN_REPORT_ATTRIBUTION)
    async def skan_report_attribution(self, request: web.Request) -> web.Response:
        return await self.skan_postback(request)

    @documented(HEALTHZ)
    async def healthz(self, _request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    @documented(readiness_operation("the database and the broker"))
    async def readyz(self, _request: web.Request) -> web.Response:
        try:
            if self._readiness is not None:
                await self._readiness()
        except Exception as exc:
            return json_response({"status": "unavailable", "reason": str(exc)}, 503)
        return json_response({"status": "ready"})

    @documented(OPENAPI)
    async def openapi(self, request: web.Request) -> web.Response:
        if self._document is None:
            self._document = build_document(request.app.router.routes(), docs.SPEC)
        return json_response(self._document)

    @documented(METRICS)
    async def metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response


def user_agent_of(request: web.Request) -> str | None:
    """The User-Agent header as text that encodes: aiohttp keeps bytes that are not UTF-8 as lone surrogates,
    which the Avro encoder and the fingerprint hash refuse. Such bytes become U+FFFD."""
    value = request.headers.get("User-Agent")
    if value is None or storable_text(value):
        return value
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "\ufffd")


def store_url_with_click(store_url: str, click: dict[str, Any]) -> str:
    """Play Store links carry our click key in the install referrer, so installs match exactly."""
    if "play.google.com" not in store_url:
        return store_url
    from urllib.parse import quote

    separator = "&" if "?" in store_url else "?"
    return f"{store_url}{separator}referrer={quote('click_id=' + click['click_key'], safe='')}"


@web.middleware
def build_app(gateway: Gateway, *, max_body_bytes: int) -> web.Application:
    """Ingest only: events, clicks and tracking links, webhooks, SKAN postbacks, health. The admin API is a
    service of its own (services/admin/), off the public port."""
    app = web.Application(client_max_size=max_body_bytes, middlewares=[answers_counted("gateway")])
    app.router.add_post("/v1/events", gateway.post_events)
    app.router.add_post("/v1/clicks", gateway.post_click)
    app.router.add_get("/c/{link_id}", gateway.click_redirect)
    app.router.add_post("/v1/webhooks/revenuecat/{app_id}", gateway.revenuecat_webhook)
    app.router.add_post("/v1/skan/postbacks", gateway.skan_postback)
    app.router.add_post("/.well-known/skadnetwork/report-attribution/", gateway.skan_report_attribution)
    app.router.add_post("/.well-known/skadnetwork/report-attribution", gateway.skan_report_attribution)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.metrics)
    app.router.add_get("/openapi.json", gateway.openapi)
    return app
