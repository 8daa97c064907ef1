"""Dead letters: the DLQ topics, read and replayed through the CLI's code (shared/kafka/dlq.py).

GET /admin/v1/dlq reads a bounded window per partition (`window` records back from the end, or from where
`cursor` says the previous page stopped) and answers the matching ones with the cursor of the page after;
GET /admin/v1/dlq/{topic}/{partition}/{offset} shows one in full, as `apprefer dlq show`; POST
/admin/v1/dlq/replay replays the matching ones, as `apprefer dlq replay`, recorded so a second replay skips them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr

from services.admin.guard import AdminContext, Body
from services.admin.openapi import operation
from shared.kafka.dlq import (
    DEFAULT_LIMIT,
    DEFAULT_WINDOW,
    MAX_LIMIT,
    MAX_WINDOW,
    BrokerUnreachable,
    DeadLetterDesk,
    DeadLetterReadError,
    DlqFilter,
    ReplayRunning,
    dead_letter_topics,
    epoch_ms,
)
from shared.kafka.producer import DeliveryFailed
from shared.networks.registry import registry
from shared.openapi import Answer, documented
from shared.web import error_response, json_response, model_body, storable_text

_MAX_PARTITION, _MAX_OFFSET = 2**31 - 1, 2**63 - 1


class BadParameter(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ReplayIn(Body):
    network: str | None = Field(None, max_length=40)
    topic: str | None = Field(None, min_length=1, max_length=249)
    app_id: str | None = Field(None, max_length=100)
    event_id: str | None = Field(None, max_length=100)
    error: str | None = Field(None, max_length=2000)
    since: StrictInt | StrictStr | None = None  # epoch ms, or what `apprefer dlq --since` takes
    until: StrictInt | StrictStr | None = None
    dry_run: StrictBool = False
    force: StrictBool = False  # replay those already replayed too


class LetterQuery(BaseModel):
    network: str | None = Field(None, description="one network's forwarding dead letters")
    topic: str | None = Field(None, description="one topic's (`.dlq` added when missing); not with network")
    app_id: str | None = None
    event_id: str | None = None
    error: str | None = Field(None, description="the error contains this text")
    since: str | None = Field(None, description="epoch ms, RFC 3339, or 2h, yesterday ...")
    until: str | None = Field(None, description="as since")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    window: int = Field(DEFAULT_WINDOW, ge=1, le=MAX_WINDOW, description="records read back per partition")
    cursor: str | None = Field(None, description="the `next` of the page before")


class DeadLetterSummary(BaseModel):
    position: str = Field(description="topic:partition:offset")
    topic: str
    partition: int
    offset: int
    failed_at_ms: int | None
    app_id: str | None
    event_id: str | None
    network: str | None
    error: str | None
    source_topic: str | None
    service: str | None


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterSummary]
    next: str | None


class DeadLetterDetail(DeadLetterSummary):
    schema_: str | None = Field(alias="schema", description="the record's Avro schema, when it is a known record")
    record: dict[str, Any] | None
    headers: dict[str, Any]
    value_hex: str | None = Field(None, description="the value's bytes when it is not a known record")


class ReplayOutcome(BaseModel):
    dry_run: bool
    matched: int = Field(description="dead letters matching the filters")
    skipped: int = Field(description="matching, already replayed, left out (none with force)")
    count: int = Field(description="published (a dry run: that would be)")
    positions: list[str]


def topics_of(network: str | None, topic: str | None) -> list[str]:
    """The DLQ topics to read: the network's, the topic's (`.dlq` added when missing) or every one."""
    if network is not None and network not in registry().names:
        raise BadParameter("network", f"unknown network {network}; known: {', '.join(registry().names)}")
    if network is not None and topic is not None:
        raise BadParameter("topic", "give network or topic, not both")
    if topic is not None and not storable_text(topic):
        raise BadParameter("topic", "topic cannot contain a NUL character")
    return dead_letter_topics(network, topic)


def letter_filter(values: dict[str, Any]) -> DlqFilter:
    """app_id, event_id, error, since and until as a DlqFilter; BadParameter naming the first bad one."""
    times: dict[str, int | None] = {}
    for name in ("since", "until"):
        value = values.get(name)
        try:
            times[name] = epoch_ms(None if value is None else str(value))
        except ValueError as exc:
            raise BadParameter(name, f"{name}: {exc}") from None
    return DlqFilter(app_id=values.get("app_id") or None, event_id=values.get("event_id") or None,
                     error_contains=values.get("error") or None, since_ms=times["since"], until_ms=times["until"])


def _bounded(query: dict[str, str], name: str, default: int, most: int) -> int:
    try:
        return min(max(int(query.get(name, str(default))), 1), most)
    except ValueError:
        raise BadParameter(name, f"{name} must be an integer") from None


def _number(text: str, name: str, most: int) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > most:
        raise BadParameter(name, f"{name} must be an integer from 0 to {most}")
    return int(text)


def _unavailable(exc: Exception) -> web.Response:
    return error_response(503, "unavailable", str(exc))


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    lister = ctx.dead_letters
    desk = lister if isinstance(lister, DeadLetterDesk) else None

    @routes.get("/admin/v1/dlq")
    @documented(operation("Dead letters, newest first, read from a bounded window (nothing is consumed)",
                          {200: Answer("matching dead letters with their errors", DeadLetterPage)},
                          query=LetterQuery))
    @ctx.guarded
    async def dead_letter_list(request: web.Request) -> web.StreamResponse:
        if lister is None:
            return error_response(503, "unavailable", "dead-letter listing is not configured")
        query = dict(request.query)
        try:
            network, topic = query.get("network") or None, query.get("topic") or None
            topics = topics_of(network, topic)
            wanted = letter_filter(query)
            limit = _bounded(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
            window = _bounded(query, "window", DEFAULT_WINDOW, MAX_WINDOW)
        except BadParameter as exc:
            return error_response(400, "invalid_request", str(exc), exc.name)
        cursor = query.get("cursor") or None
        if desk is None:  # a bare lister (a test's): the first page only
            if topic is not None or cursor is not None:
                return error_response(503, "unavailable", "paging dead letters is not configured")
            return json_response({"dead_letters": await ctx.call(lister, network, wanted, limit), "next": None})
        try:
            page = await ctx.call(lambda: desk.page(topics, wanted, limit=limit, window=window, cursor=cursor))
        except ValueError as exc:  # the cursor's
            return error_response(400, "invalid_request", str(exc), "cursor")
        except (BrokerUnreachable, DeadLetterReadError) as exc:
            return _unavailable(exc)
        return json_response({"dead_letters": [letter.summary() for letter in page.letters], "next": page.next})

    @routes.get("/admin/v1/dlq/{topic}/{partition}/{offset}")
    @documented(operation("One dead letter in full", {200: Answer("the letter", DeadLetterDetail), 404: "NotFound"},
                          path={"topic": {"description": "a dead-letter topic: <topic>.dlq"},
                                "partition": {"pattern": "^[0-9]+$"}, "offset": {"pattern": "^[0-9]+$"}}))
    @ctx.guarded
    async def dead_letter_show(request: web.Request) -> web.StreamResponse:
        if desk is None:
            return error_response(503, "unavailable", "dead letters are not configured")
        topic = request.match_info["topic"]
        try:
            if not topic.endswith(".dlq") or not storable_text(topic):
                raise BadParameter("topic", "not a dead-letter topic (<topic>.dlq)")
            partition = _number(request.match_info["partition"], "partition", _MAX_PARTITION)
            offset = _number(request.match_info["offset"], "offset", _MAX_OFFSET)
        except BadParameter as exc:
            return error_response(400, "invalid_request", str(exc), exc.name)
        try:
            letter = await ctx.call(desk.show, topic, partition, offset)
        except (BrokerUnreachable, DeadLetterReadError) as exc:
            return _unavailable(exc)
        if letter is None:
            return error_response(404, "not_found", f"no dead letter at {topic}:{partition}:{offset}")
        return json_response(letter.detail())

    @routes.post("/admin/v1/dlq/replay")
    @documented(operation("Replay matching dead letters (dry_run: say what would be)",
                          {200: Answer("what was (or would be) replayed", ReplayOutcome), 409: "Conflict"},
                          body=ReplayIn, body_required=False))
    @ctx.guarded
    async def dead_letter_replay(request: web.Request) -> web.StreamResponse:
        if desk is None:
            return error_response(503, "unavailable", "dead-letter replay is not configured")
        body = await model_body(request, ReplayIn)
        try:
            topics = topics_of(body.network, body.topic)
            wanted = letter_filter(body.model_dump())
        except BadParameter as exc:
            return error_response(400, "invalid_request", str(exc), exc.name)
        try:
            plan, replayed = await ctx.call(
                lambda: desk.replay(topics, wanted, dry_run=body.dry_run, force=body.force))
        except ReplayRunning as exc:
            return error_response(409, "conflict", str(exc))
        except (BrokerUnreachable, DeadLetterReadError) as exc:
            return _unavailable(exc)
        except DeliveryFailed as exc:
            # Batches acknowledged before this one are recorded: a replay again publishes only the rest.
            return error_response(503, "unavailable", f"replay stopped, the broker did not acknowledge: {exc}")
        answer = {"dry_run": body.dry_run, "matched": plan.matched, "skipped": plan.skipped,
                  "count": len(plan.letters) if body.dry_run else replayed,
                  "positions": [letter.position for letter in plan.letters]}
        return json_response(answer)
