"""What every dashboard page shares: the admin context (the store, Test Connection, dead letters), the guard of a
signed-in page (session, then CSRF on a POST), rendering, the admin event of each action, and the answers to
what a page's store call raises."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.exc import DataError

from services.admin.api.apps import decode_cursor
from services.admin.dashboard import sessions
from services.admin.dashboard.replay_jobs import ReplayJobs
from services.admin.dashboard.sessions import SIGNED_IN, SignedIn
from services.admin.guard import AdminContext, admin_action
from services.admin.store import AdminStore
from shared.errors import NotFound
from shared.kafka.dlq import DeadLetterDesk
from shared.settings import Settings
from shared.web import storable_text

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Form = MultiDictProxy[Any]

log = logging.getLogger(__name__)

# The app an action made (app.create), for its admin event: no path names it yet.
ACTED_ON_APP = web.RequestKey("dashboard_acted_on_app", str)


@dataclass
class Dashboard:
    ctx: AdminContext
    session_hours: float
    settings: Settings | None = None  # the health page reads the services' addresses from it
    replays: ReplayJobs = field(default_factory=ReplayJobs)  # the Dead letters page's, with their progress
    _http: aiohttp.ClientSession | None = field(default=None, init=False)

    @property
    def store(self) -> AdminStore:
        return self.ctx.store

    @property
    def desk(self) -> DeadLetterDesk | None:
        lister = self.ctx.dead_letters
        return lister if isinstance(lister, DeadLetterDesk) else None

    def http(self) -> aiohttp.ClientSession:
        """The client of the health page's requests to the services, made on first use."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self, _app: web.Application) -> None:
        await self.replays.close()
        if self._http is not None:
            await self._http.close()

    # --- answers -----------------------------------------------------------------------------------

    def render(self, request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
               ) -> web.Response:
        signed = request.get(SIGNED_IN)
        shared = {"signed_in": signed, "csrf_token": signed.csrf_token if signed else "",
                  "current_path": request.path}
        return aiohttp_jinja2.render_template(template, request, {**shared, **context}, status=status)

    def problem(self, request: web.Request, status: int, title: str, message: str) -> web.Response:
        return self.render(request, "problem.html", {"title": title, "message": message}, status=status)

    def disabled(self, request: web.Request) -> web.Response:
        return self.problem(request, 503, "Dashboard disabled",
                            "APPREFER_ADMIN_TOKEN is not set: the dashboard signs in with it.")

    @staticmethod
    def see_other(location: str) -> web.Response:
        """The answer to a form that worked: the browser GETs `location` (no form sent twice on reload)."""
        return web.Response(status=303, headers={"Location": location})

    @staticmethod
    def is_htmx(request: web.Request) -> bool:
        return request.headers.get("HX-Request") == "true"

    def to_sign_in(self, request: web.Request) -> web.Response:
        if self.is_htmx(request):  # a fetch would follow a redirect and swap the sign-in page into a card
            response = web.Response(status=401, headers={"HX-Redirect": "/signin"})
        else:
            target = "/signin"
            if request.method == "GET" and request.path_qs != "/":
                target += "?next=" + quote(request.path_qs, safe="")
            response = self.see_other(target)
        if sessions.COOKIE in request.cookies:
            sessions.clear_session_cookie(response, request)
        return response

    # --- guards ------------------------------------------------------------------------------------

    def page(self, handler: Handler) -> Handler:
        """A signed-in page: no session (or an expired one), the sign-in page; a POST without the session's CSRF
        token, 403 before the handler runs."""
        return self._guarded(self._answered(handler))

    def action(self, name: str) -> Callable[[Handler], Handler]:
        """A signed-in POST that changes something: recorded as an admin event `name` ("app.create"), with the
        session's admin token id, the path, the app and the status answered below 500, as the admin API records
        its writes (after the CSRF check: a refused request did nothing; a failure to record is logged)."""

        def decorate(handler: Handler) -> Handler:
            answered = self._answered(handler)

            async def recorded(request: web.Request) -> web.StreamResponse:
                response = await answered(request)
                if response.status < 500:
                    await self.record(request, name, response.status)
                return response

            return self._guarded(recorded)

        return decorate

    def _guarded(self, handler: Handler) -> Handler:
        async def guard(request: web.Request) -> web.StreamResponse:
            admin_token = self.ctx.admin_token
            if admin_token is None:
                return self.disabled(request)
            signed = await self.ctx.call(sessions.current, self.store, admin_token, request)
            if signed is None:
                return self.to_sign_in(request)
            request[SIGNED_IN] = signed
            if request.method == "POST":
                given = sessions.csrf_given(request, await request.post())
                if not sessions.csrf_valid(signed.csrf_token, given):
                    return self.problem(request, 403, "Refused",
                                        "This form's security token is missing or out of date. Reload the page "
                                        "and try again.")
            return await handler(request)

        return guard

    def _answered(self, handler: Handler) -> Handler:
        """What a page's store call raises, as a page."""

        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except NotFound as exc:
                return self.problem(request, 404, "Not found", str(exc))
            except DataError:
                return self.problem(request, 400, "Cannot be stored",
                                    "A value cannot be stored (a NUL character, or too long).")

        return answer

    async def record(self, request: web.Request, action: str, status: int) -> None:
        signed: SignedIn = request[SIGNED_IN]
        app_id = request.match_info.get("app_id") or request.get(ACTED_ON_APP)
        if app_id is not None and (len(app_id) > 40 or not storable_text(app_id)):
            app_id = None
        try:
            await self.ctx.call(lambda: self.store.record_admin_event(
                token_id=signed.token_id, action=action, method=request.method, path=request.rel_url.raw_path,
                app_id=app_id, status=status))
        except Exception:
            log.exception("admin event not recorded", extra={"action": action, "status": status})

    # --- the app a page is about -------------------------------------------------------------------

    async def app_of(self, request: web.Request) -> dict[str, Any]:
        """The app the path names (NotFound: the guard's 404 page)."""
        return await self.ctx.call(self.store.get_app, request.match_info["app_id"])


async def form_of(request: web.Request) -> Form:
    return await request.post()


def same_as_api(route: str) -> str:
    """The admin event action of the admin API route doing the same ("DELETE /admin/v1/apps/{app_id}/keys/{key_id}"
    -> "key.delete"): the dashboard's writes and the API's are recorded under one vocabulary."""
    method, _, canonical = route.partition(" ")
    return admin_action(canonical, method)


def page_position(cursor: str | None, shape: tuple[type, ...]) -> tuple[Any, ...] | None:
    """Where a paged list resumes (the admin API's cursors); a cursor it did not give is the first page."""
    if not cursor:
        return None
    try:
        return decode_cursor(cursor, shape)
    except web.HTTPBadRequest:
        return None
