"""Dead letters: the admin API's listing (a bounded window per partition, newest first, `next` to read further back)
with its filters, then the ones selected dry-run (what a replay would publish) and replayed, through the same
desk as the API and `apprefer dlq replay` (shared/kafka/dlq.py): published to their source topics, audited
`retrying`, recorded so a second replay skips them. The result links to the audit of each event replayed."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from services.admin.api.dlq import BadParameter, letter_filter, topics_of
from services.admin.dashboard.replay_jobs import ReplayJob
from services.admin.dashboard.site import Dashboard, Form, form_of, same_as_api
from shared.kafka.dlq import (
    DEFAULT_WINDOW,
    BrokerUnreachable,
    DeadLetterReadError,
    DlqFilter,
    ReplayRunning,
    dead_letter_topics,
)
from shared.kafka.producer import DeliveryFailed
from shared.networks.registry import registry

PAGE_SIZE = 50
MAX_SELECTED = 1000
FILTERS = ("network", "app_id", "event_id", "error", "since", "until")
_POSITION = re.compile(r"(?P<topic>[A-Za-z0-9._-]{1,249}):(?P<partition>\d{1,10}):(?P<offset>\d{1,19})")


def selected(form: Form) -> tuple[list[str], str | None]:
    """The positions ticked (topic:partition:offset of a dead-letter topic), or why they cannot be replayed."""
    positions = [value for value in form.getall("position", []) if isinstance(value, str)]
    if not positions:
        return [], "select at least one dead letter"
    if len(positions) > MAX_SELECTED:
        return [], f"select at most {MAX_SELECTED} dead letters at once"
    known = set(dead_letter_topics())
    for position in positions:
        match = _POSITION.fullmatch(position)
        if match is None or match["topic"] not in known:
            return [], f"{position[:300]} is not a dead letter's position"
    return list(dict.fromkeys(positions)), None


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:

    def letters_context(values: dict[str, str]) -> dict[str, Any]:
        return {"values": values, "networks": [(name, name) for name in registry().names], "letters": [],
                "next": None, "errors": {}, "unavailable": None, "result": None, "first_page": True}

    @routes.get("/dead-letters")
    @dash.page
    async def dead_letters(request: web.Request) -> web.StreamResponse:
        values = {name: request.query.get(name, "").strip() for name in FILTERS}
        context = letters_context(values)
        context["first_page"] = not request.query.get("cursor")
        desk = dash.desk
        if desk is None:
            context["unavailable"] = "dead letters are not configured in this admin service"
            return dash.render(request, "dead_letters.html", context, status=503)
        try:
            topics = topics_of(values["network"] or None, None)
            wanted = letter_filter(values)
        except BadParameter as exc:
            context["errors"] = {exc.name: str(exc)}
            return dash.render(request, "dead_letters.html", context, status=400)
        cursor = request.query.get("cursor") or None
        try:
            page = await dash.ctx.call(lambda: desk.page(topics, wanted, limit=PAGE_SIZE, window=DEFAULT_WINDOW,
                                                         cursor=cursor))
        except ValueError as exc:  # a cursor of other filters
            context["errors"] = {"cursor": str(exc)}
            return dash.render(request, "dead_letters.html", context, status=400)
        except (BrokerUnreachable, DeadLetterReadError) as exc:
            context["unavailable"] = str(exc)
            return dash.render(request, "dead_letters.html", context, status=503)
        context["letters"] = [letter.summary() for letter in page.letters]
        if page.next:
            context["next"] = {**{k: v for k, v in values.items() if v}, "cursor": page.next}
        return dash.render(request, "dead_letters.html", context)

    async def outcome(positions: list[str], dry_run: bool, job: ReplayJob | None = None) -> tuple[dict[str, Any], int]:
        """The replay (or dry run) of these positions through the desk, as the page shows it, and its status."""
        result: dict[str, Any] = {"dry_run": dry_run, "error": None, "positions": positions}
        desk = dash.desk
        if desk is None:
            result["error"] = "dead letters are not configured in this admin service"
            return result, 503
        # Only the topics the positions are on are read; the filter keeps those positions.
        topics = sorted({position.rsplit(":", 2)[0] for position in positions})
        wanted = DlqFilter(positions=frozenset(positions))
        try:
            plan, published = await dash.ctx.call(lambda: desk.replay(
                topics, wanted, dry_run=dry_run, force=False, planned=job.planned if job else None,
                progress=job.advance if job else None))
        except ReplayRunning as exc:
            result["error"] = str(exc)
            return result, 409
        except (BrokerUnreachable, DeadLetterReadError) as exc:
            result["error"] = str(exc)
            return result, 503
        except DeliveryFailed as exc:
            result["error"] = f"replay stopped, the broker did not acknowledge: {exc}"
            return result, 503
        result.update(matched=plan.matched, skipped=plan.skipped, count=len(plan.letters) if dry_run else published,
                      letters=[letter.summary() for letter in plan.letters])
        return result, 200

    @routes.post("/dead-letters/replay")
    @dash.action(same_as_api("POST /admin/v1/dlq/replay"))
    async def replay(request: web.Request) -> web.StreamResponse:
        form = await form_of(request)
        dry_run = form.get("action") != "replay"
        positions, refused = selected(form)
        if refused is not None:
            result, status = {"dry_run": dry_run, "error": refused, "positions": positions}, 400
        elif not dry_run and dash.is_htmx(request) and dash.desk is not None:
            # In the background: the page asks for its progress until it is done (replay_jobs.py).
            async def replayed(job: ReplayJob) -> dict[str, Any]:
                return (await outcome(positions, False, job))[0]

            job = dash.replays.start(len(positions), replayed)
            return dash.render(request, "_replay_progress.html", {"job": job}, status=202)
        else:
            result, status = await outcome(positions, dry_run)
        if dash.is_htmx(request):
            return dash.render(request, "_replay_result.html", {"result": result}, status=status)
        context = letters_context(dict.fromkeys(FILTERS, ""))
        context["result"] = result
        return dash.render(request, "dead_letters.html", context, status=status)

    @routes.get("/dead-letters/replay/{job_id}")
    @dash.page
    async def replay_progress(request: web.Request) -> web.StreamResponse:
        job = dash.replays.get(request.match_info["job_id"])
        if job is None:
            return dash.render(request, "_replay_result.html", {"result": {
                "dry_run": False, "positions": [], "error": "this replay is not known here (finished more than "
                "10 minutes ago, or started by another admin replica): see the audit log"}}, status=404)
        if job.outcome is None:
            return dash.render(request, "_replay_progress.html", {"job": job})
        return dash.render(request, "_replay_result.html", {"result": job.outcome})
