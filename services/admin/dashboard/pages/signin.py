"""Sign-in with the admin token, and sign-out (a POST: a link could be followed by anything)."""

from __future__ import annotations

from aiohttp import web

from services.admin.dashboard import sessions
from services.admin.dashboard.sessions import SIGNED_IN, SignedIn
from services.admin.dashboard.site import Dashboard, form_of


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store = dash.store

    @routes.get("/")
    async def home(_request: web.Request) -> web.StreamResponse:
        return dash.see_other("/apps")

    @routes.get("/signin")
    async def sign_in_page(request: web.Request) -> web.StreamResponse:
        admin_token = dash.ctx.admin_token
        if admin_token is None:
            return dash.disabled(request)
        next_page = sessions.safe_next(request.query.get("next"))
        if await dash.ctx.call(sessions.current, store, admin_token, request) is not None:
            return dash.see_other(next_page)
        token, new = sessions.sign_in_token(request)
        response = dash.render(request, "signin.html", {"form_token": token, "next": next_page, "error": None})
        if new:
            sessions.set_sign_in_token(response, request, token)
        return response

    @routes.post("/signin")
    async def sign_in(request: web.Request) -> web.StreamResponse:
        admin_token = dash.ctx.admin_token
        if admin_token is None:
            return dash.disabled(request)
        form = await form_of(request)
        expected = request.cookies.get(sessions.SIGN_IN_COOKIE, "")
        if not sessions.csrf_valid(expected, sessions.csrf_given(request, form)):
            return dash.problem(request, 403, "Refused",
                                "This sign-in form is out of date. Open the sign-in page again.")
        next_page = sessions.safe_next(str(form.get("next", "")))
        given = form.get("token")
        if not isinstance(given, str) or not sessions.token_matches(given.strip(), admin_token):
            # No cookie is set on this answer, and nothing is recorded: nobody signed in.
            return dash.render(request, "signin.html", {
                "form_token": expected, "next": next_page,
                "error": "That is not the admin token (APPREFER_ADMIN_TOKEN)."}, status=401)
        secret, record = sessions.new_session(admin_token, dash.session_hours)
        await dash.ctx.call(store.create_dashboard_session, record)
        request[SIGNED_IN] = SignedIn(record.secret_hash, record.token_id, record.csrf_token, record.expires_at_ms)
        response = dash.see_other(next_page)
        sessions.set_session_cookie(response, request, secret, dash.session_hours)
        sessions.clear_sign_in_token(response, request)
        await dash.record(request, "session.create", response.status)
        return response

    @routes.post("/signout")
    @dash.action("session.delete")
    async def sign_out(request: web.Request) -> web.StreamResponse:
        await dash.ctx.call(store.end_dashboard_session, request[SIGNED_IN].secret_hash)
        response = dash.see_other("/signin")
        sessions.clear_session_cookie(response, request)
        return response
