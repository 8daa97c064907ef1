"""OpenAPI 3.1 documents made from the routes and the pydantic models they read and answer.

A handler says what it is with `@documented(Operation(...))`: a summary, the model of its body, the model of its
query, and its answers (status -> the model answered, or the name of an answer the document shares).
`build_document` walks the aiohttp router: every route must be documented (UndocumentedRoute otherwise, and a
test builds both services' documents), path parameters come from the route's `{name}`s, and every model's JSON
schema goes under components/schemas, made by pydantic (`TypeAdapter.json_schemas`). What the shared web server
and the shared body reader answer on their own (a body arriving too slowly, a request line too long, a body
that is not JSON or too large) is added to every operation it can happen to.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

H = TypeVar("H", bound=Callable[..., Any])

_OPENAPI_ATTR = "__openapi__"
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_REF_TEMPLATE = "#/components/schemas/{model}"
# aiohttp's HTTP parser answers a request line (path + query) or a header longer than 8190 bytes itself, before
# any handler: a 400 with a text/plain body. Every operation with parameters can meet it.
LINE_TOO_LONG = "request line or a header over 8190 bytes (the HTTP layer's answer, text/plain)"


class ErrorOut(BaseModel):
    """Every error answer of both services (shared/web.py error_response)."""

    error: str
    message: str
    field: str | None = None


class InputErrorOut(ErrorOut):
    """Bad input: `field` names it (e.g. events[3].device.device_id; `body` for an unreadable body)."""

    field: str


@dataclass(frozen=True)
class Answer:
    """One answer of an operation: its description, and the model of its JSON body (None: no body, or `schema`
    for another content type)."""

    description: str
    model: Any = None
    content_type: str = "application/json"
    schema: Mapping[str, Any] | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    examples: Mapping[str, Any] = field(default_factory=dict)
    more_content: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # content type -> schema


@dataclass(frozen=True)
class Operation:
    summary: str
    answers: Mapping[int, Answer | str]  # a str names one of the document's shared answers
    description: str = ""
    tags: tuple[str, ...] = ()
    body: Any = None  # a pydantic model or any type a TypeAdapter takes (a TypedDict, a union)
    body_required: bool = True
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    query: type[BaseModel] | None = None  # one parameter per field (its alias, its schema, its description)
    path: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # a path parameter's schema and description
    security: str | None = None  # a security scheme of the document


def documented(operation: Operation) -> Callable[[H], H]:
    """Attach `operation` to a handler (apply it outermost: above a guard, below the route decorator)."""

    def attach(handler: H) -> H:
        setattr(handler, _OPENAPI_ATTR, operation)
        return handler

    return attach


def operation_of(handler: Any) -> Operation | None:
    found = getattr(handler, _OPENAPI_ATTR, None)
    return found if isinstance(found, Operation) else None


class UndocumentedRoute(LookupError):
    pass


@dataclass(frozen=True)
class DocumentSpec:
    title: str
    description: str
    security_schemes: Mapping[str, Mapping[str, Any]]
    answers: Mapping[str, Answer]  # components/responses, named by operations
    # What a security scheme answers before any handler runs (the admin token's 401, ...).
    security_answers: Mapping[str, Mapping[int, Answer | str]] = field(default_factory=dict)
    # What reading a body answers on its own (not JSON: 400; too large: 413; too slow: 408).
    body_answers: Mapping[int, Answer | str] = field(default_factory=dict)
    version: str = "1"


Key = tuple[str, JsonSchemaMode]


class _Schemas:
    """Every type the document needs, made into JSON schemas in one pass, so shared models are one component."""

    def __init__(self) -> None:
        self._inputs: dict[Key, tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = {}
        self._keys: dict[tuple[Any, str], Key] = {}  # (the type, the mode): types and unions are hashable
        self.made: dict[Key, dict[str, Any]] = {}
        self.components: dict[str, Any] = {}

    def want(self, kind: Any, mode: JsonSchemaMode) -> Key:
        found = self._keys.get((kind, mode))
        if found is None:
            found = (f"{len(self._keys)}", mode)
            self._keys[(kind, mode)] = found
            self._inputs[found] = (found[0], mode, TypeAdapter(kind))
        return found

    def make(self) -> None:
        if not self._inputs:
            return
        made, definitions = TypeAdapter.json_schemas(self._inputs.values(), ref_template=_REF_TEMPLATE)
        self.made = {key: dict(schema) for key, schema in made.items()}
        self.components = dict(definitions.get("$defs", {}))

    def resolved(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return dict(self.components[ref.rsplit("/", 1)[1]])
        return dict(schema)


def build_document(routes: Iterable[web.AbstractRoute], spec: DocumentSpec,
                   include: Callable[[str], bool] = lambda path: True) -> dict[str, Any]:
    """The OpenAPI document of these routes (an app's `app.router.routes()`) whose canonical path `include`
    takes; UndocumentedRoute for one that has no Operation."""
    schemas = _Schemas()
    planned: list[tuple[str, str, Operation, list[str]]] = []
    for route in routes:
        if route.method == "HEAD" or route.resource is None:
            continue  # aiohttp's automatic HEAD for every GET
        canonical = route.resource.canonical
        if not include(canonical):
            continue
        operation = operation_of(route.handler)
        if operation is None:
            raise UndocumentedRoute(f"{route.method} {canonical} has no @documented Operation")
        if not operation.description and inspect.getdoc(route.handler):  # the handler's docstring says it
            operation = replace(operation, description=inspect.getdoc(route.handler) or "")
        planned.append((canonical, route.method.lower(), operation, _PATH_PARAM.findall(canonical)))
        for answer in _answers(operation, spec).values():
            if isinstance(answer, Answer) and answer.model is not None:
                schemas.want(answer.model, "serialization")
        if operation.body is not None:
            schemas.want(operation.body, "validation")
        if operation.query is not None:
            schemas.want(operation.query, "validation")
    for answer in spec.answers.values():
        if answer.model is not None:
            schemas.want(answer.model, "serialization")
    schemas.make()

    paths: dict[str, dict[str, Any]] = {}
    for canonical, method, operation, path_names in planned:
        path = _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", canonical)
        paths.setdefault(path, {})[method] = _operation(operation, path_names, spec, schemas)
    query_models = {schemas.want(op.query, "validation") for _, _, op, _ in planned if op.query is not None}
    for key in query_models:  # a query model is its parameters, not a component
        ref = schemas.made[key].get("$ref", "")
        schemas.components.pop(ref.rsplit("/", 1)[-1], None)
    return {
        "openapi": "3.1.0",
        "info": {"title": spec.title, "version": spec.version, "description": spec.description},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": dict(spec.security_schemes),
            "schemas": dict(sorted(schemas.components.items())),
            "headers": {"RetryAfter": {"description": "seconds to wait before retrying",
                                       "schema": {"type": "string"}}},
            "responses": {name: _answer(answer, schemas) for name, answer in spec.answers.items()},
        },
    }


def _answers(operation: Operation, spec: DocumentSpec) -> dict[int, Answer | str]:
    answers: dict[int, Answer | str] = {}
    if operation.body is not None:
        answers.update(spec.body_answers)
    if operation.security is not None:
        answers.update(spec.security_answers.get(operation.security, {}))
    answers.update(operation.answers)
    return answers


def _operation(operation: Operation, path_names: list[str], spec: DocumentSpec,
               schemas: _Schemas) -> dict[str, Any]:
    documented_op: dict[str, Any] = {"summary": operation.summary}
    if operation.description:
        documented_op["description"] = operation.description
    if operation.tags:
        documented_op["tags"] = list(operation.tags)
    if operation.security is not None:
        documented_op["security"] = [{operation.security: []}]
    parameters = [_path_parameter(name, operation.path.get(name, {})) for name in path_names]
    if operation.query is not None:
        parameters += _query_parameters(schemas.resolved(schemas.made[schemas.want(operation.query, "validation")]))
    if parameters:
        documented_op["parameters"] = parameters
    if operation.body is not None:
        media: dict[str, Any] = {"schema": schemas.made[schemas.want(operation.body, "validation")]}
        if operation.body_examples:
            media["examples"] = {name: {"value": value} for name, value in operation.body_examples.items()}
        documented_op["requestBody"] = {"required": operation.body_required, "content": {"application/json": media}}
    responses: dict[str, Any] = {}
    for status, answer in sorted(_answers(operation, spec).items()):
        responses[str(status)] = (_answer(answer, schemas) if isinstance(answer, Answer)
                                  else {"$ref": f"#/components/responses/{answer}"})
    if parameters:
        responses["400"] = _with_line_too_long(responses.get("400"), spec, schemas)
    documented_op["responses"] = responses
    return documented_op


def _path_parameter(name: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, **{k: v for k, v in extra.items() if k != "description"}}
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
    if extra.get("description"):
        parameter["description"] = extra["description"]
    return parameter


def _query_parameters(model_schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    required = set(model_schema.get("required", ()))
    parameters = []
    for name, schema in model_schema.get("properties", {}).items():
        schema = _without_null(schema)
        schema.pop("title", None)
        description = schema.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _without_null(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a query has no null (an optional parameter is left out)."""
    shown = {key: value for key, value in schema.items() if not (key == "default" and value is None)}
    options = shown.pop("anyOf", None)
    if options is not None:
        kept = [option for option in options if option != {"type": "null"}]
        shown.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
    return shown


def _answer(answer: Answer, schemas: _Schemas) -> dict[str, Any]:
    documented_answer: dict[str, Any] = {"description": answer.description}
    schema: Mapping[str, Any] | None = answer.schema
    if answer.model is not None:
        schema = schemas.made[schemas.want(answer.model, "serialization")]
    if schema is not None:
        media: dict[str, Any] = {"schema": dict(schema)}
        if answer.examples:
            media["examples"] = {name: {"value": value} for name, value in answer.examples.items()}
        documented_answer["content"] = {answer.content_type: media}
    for content_type, other in answer.more_content.items():
        documented_answer.setdefault("content", {})[content_type] = {"schema": dict(other)}
    if answer.headers:
        documented_answer["headers"] = dict(answer.headers)
    return documented_answer


def _with_line_too_long(bad: dict[str, Any] | None, spec: DocumentSpec, schemas: _Schemas) -> dict[str, Any]:
    if bad is None:
        bad = {"description": LINE_TOO_LONG, "content": {}}
    else:
        if "$ref" in bad:
            bad = _answer(spec.answers[bad["$ref"].rsplit("/", 1)[1]], schemas)
        bad = {**bad, "description": f"{bad['description']}; or {LINE_TOO_LONG}"}
    return {**bad, "content": {**bad.get("content", {}), "text/plain": {"schema": {"type": "string"}}}}


# --- what both services answer on their own ------------------------------------------------------------------

RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}


class StatusOk(BaseModel):
    status: Literal["ok"]


class StatusReady(BaseModel):
    status: Literal["ready"]


class StatusUnavailable(BaseModel):
    status: Literal["unavailable"]
    reason: str | None = None


HEALTHZ = Operation("Liveness", {200: Answer("the process is up", StatusOk)}, tags=("operations",))
METRICS = Operation("Prometheus metrics", {200: Answer("text exposition format", content_type="text/plain",
                                                       schema={"type": "string"})}, tags=("operations",))
OPENAPI = Operation("This document", {200: Answer("OpenAPI 3.1", schema={"type": "object"})}, tags=("operations",))


def readiness_operation(what: str) -> Operation:
    return Operation(f"Readiness: {what} answer", {
        200: Answer("ready", StatusReady),
        503: Answer(f"{what} do not answer", StatusUnavailable),
    }, tags=("operations",))

