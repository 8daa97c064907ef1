"""HTTP plumbing the gateway and the admin service share: JSON answers, JSON bodies, and the middleware that
counts every answer and turns what escapes a handler into a JSON error (503 + Retry-After while the
database refuses work, 500 otherwise)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.db.session import database_unavailable
from shared.errors import InputError
from shared.metrics import HTTP_REQUESTS

log = logging.getLogger(__name__)

# Deeper request JSON is refused: orjson parses 1024 levels but serialises only 254, and nothing we accept
# needs more than a few.
MAX_JSON_DEPTH = 64
DATABASE_RETRY_AFTER_SECONDS = "5"  # a lock or a failover takes seconds
_CONTAINERS = (dict, list)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def error_response(status: int, error: str, message: str, field: str | None = None) -> web.Response:
    payload = {"error": error, "message": message}
    if field:
        payload["field"] = field
    return json_response(payload, status)


def storable_text(value: str) -> bool:
    """False for text no key, id or secret can contain: a NUL (PostgreSQL refuses it) or a lone surrogate
    (aiohttp's decoding of a header or path that is not UTF-8), which would fail deep in a query or a hash."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raises InputError("body", ...) when arrays/objects nest deeper than `limit`. Iterative: no recursion."""
    if nests_deeper(value, limit):
        raise InputError("body", f"JSON nested deeper than {limit} levels")


def nests_deeper(value: Any, levels: int) -> bool:
    """Whether arrays/objects nest more than `levels` deep, `value` itself being the first level."""
    if not isinstance(value, _CONTAINERS):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > levels:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, _CONTAINERS):
                stack.append((child, level + 1))
    return False


async def json_object_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the 400 to answer (not JSON, not an object, nested too deep)."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error_response(400, "invalid_json", "body is not valid JSON", "body")
    if not isinstance(body, dict):
        return error_response(400, "invalid_request", "must be a JSON object", "body")
    try:
        check_json_depth(body)
    except InputError as exc:
        return json_response(exc.as_json(), 400)
    return body


async def model_body(request: web.Request, model: type[Model]) -> Model:
    """The request's JSON body (empty: `{}`) validated as `model`; raises a 400 naming the first bad field."""
    try:
        raw = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(
            body=orjson.dumps({"error": "invalid_json", "message": "body is not JSON"}),
            content_type="application/json",
        ) from None
    try:
        check_json_depth(raw)
    except InputError as exc:
        raise web.HTTPBadRequest(body=orjson.dumps(exc.as_json()), content_type="application/json") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise web.HTTPBadRequest(
            body=orjson.dumps({"error": "invalid_request", "field": field, "message": first["msg"]}),
            content_type="application/json",
        ) from None


class LabelledCounter:
    """A counter whose children are looked up once per label values: Counter.labels() costs about as much
    as the increment twice over, on every request. The label values are few (routes, statuses, kinds)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[tuple[str, ...], Counter] = {}

    def inc(self, *label_values: str, amount: float = 1) -> None:
        child = self._children.get(label_values)
        if child is None:
            child = self._children[label_values] = self._counter.labels(*label_values)
        child.inc(amount)


_HTTP_REQUESTS = LabelledCounter(HTTP_REQUESTS)


def answers_counted(service: str) -> Middleware:
    """The middleware: counts every answer by route and status, and answers in JSON what escapes a handler,
    the one place for failures of reading a body (every route reads it through request.read() or
    request.content). `service` names the process in a 500's message."""

    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        failed = f"the {service} failed to handle this request; retry later"
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            _HTTP_REQUESTS.inc(route, "413")
            return error_response(413, "too_large", f"body over {request.client_max_size} bytes", "body")
        except web.HTTPRequestTimeout:
            # The body did not arrive in time: raised by request.read() (shared/web_server.py's guard).
            _HTTP_REQUESTS.inc(route, "408")
            late = error_response(408, "timeout", "the body did not arrive in time", "body")
            late.force_close()
            return late
        except web.HTTPException as exc:
            _HTTP_REQUESTS.inc(route, str(exc.status))
            raise
        except web.RequestPayloadError as exc:
            # aiohttp could not decode the body: not valid in its Content-Encoding (gzip, deflate), or broken
            # chunked framing. The client's fault; the connection cannot carry another request after it.
            _HTTP_REQUESTS.inc(route, "400")
            reason = getattr(exc.__cause__, "message", "") or "malformed body"
            unreadable = error_response(400, "invalid_body", f"body cannot be read: {reason}", "body")
            unreadable.force_close()
            return unreadable
        except (DBAPIError, PoolTimeout) as exc:
            if not database_unavailable(exc):
                log.exception("unhandled database error, answered 500", extra={"route": route})
                _HTTP_REQUESTS.inc(route, "500")
                return error_response(500, "internal_error", failed)
            # Not now, rather than never: a lock, a failover, a read-only standby. Clients retry after a while.
            log.warning("database unavailable", extra={"route": route, "error": str(exc).splitlines()[0]})
            _HTTP_REQUESTS.inc(route, "503")
            unavailable = error_response(503, "unavailable", "database unavailable; retry")
            unavailable.headers["Retry-After"] = DATABASE_RETRY_AFTER_SECONDS
            return unavailable
        except ConnectionResetError:
            # The client went away mid-request (nginx logs this 499): nothing failed, and nobody reads the answer.
            _HTTP_REQUESTS.inc(route, "499")
            return error_response(499, "client_closed", "the client closed the connection")
        except Exception:
            log.exception("unhandled error, answered 500", extra={"route": route})
            _HTTP_REQUESTS.inc(route, "500")
            return error_response(500, "internal_error", failed)
        _HTTP_REQUESTS.inc(route, str(response.status))
        return response

    return count_requests
