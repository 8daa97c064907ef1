"""The admin service's OpenAPI document (GET /openapi.json): made by shared/openapi.py from its routes and the
models each route module declares (services/admin/api/). `operation` is an admin route's Operation: behind the
admin token, tagged admin, with the answers every admin route can give."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.openapi import RETRY_AFTER, Answer, DocumentSpec, ErrorOut, Operation


def operation(summary: str, answers: Mapping[int, Answer | str], **details: Any) -> Operation:
    return Operation(summary, answers, tags=("admin",), security="adminToken", **details)


SPEC = DocumentSpec(
    title="apprefer admin",
    description="The admin API (APPREFER_ADMIN_PORT, not the public port). Request bodies are parsed as JSON "
                "whatever their Content-Type; a body that is not JSON is a 400 invalid_json. Content-Encoding gzip "
                "and deflate are decoded (a body not valid in them is a 400 invalid_body; br and zstd, a 400 "
                "unsupported_encoding).",
    security_schemes={"adminToken": {"type": "http", "scheme": "bearer", "description": "APPREFER_ADMIN_TOKEN"}},
    answers={
        "BadRequest": Answer("bad input: `field` names it (a query parameter, a body field, or body for a body "
                             "that is not JSON or nested too deep); or a value that cannot be stored", ErrorOut),
        "Unauthorized": Answer("missing or wrong admin token", ErrorOut),
        "NotFound": Answer("unknown app, key, link, network, postback or dead letter", ErrorOut),
        "Conflict": Answer("conflicts with what is stored: `field` names it", ErrorOut),
        "TooLarge": Answer("body larger than APPREFER_ADMIN_MAX_BODY_BYTES", ErrorOut),
        "AdminUnavailable": Answer(
            "the database is unavailable (read-only, locked past its busy or lock timeout, down): retry after "
            "Retry-After seconds; or APPREFER_ADMIN_TOKEN is not set, or the broker does not answer (dead letters)",
            ErrorOut, headers=RETRY_AFTER),
        "BodyTimeout": Answer("the body did not arrive in time; the connection is closed", ErrorOut),
    },
    security_answers={"adminToken": {400: "BadRequest", 401: "Unauthorized", 503: "AdminUnavailable"}},
    body_answers={400: "BadRequest", 408: "BodyTimeout", 413: "TooLarge"},
)
