"""Every admin API answer a test receives is checked against the admin service's own OpenAPI document: the
status is documented for the operation, and a JSON body matches the response model's schema. So the models that
document the API (services/admin/api/) cannot drift from what the stores really answer."""

from __future__ import annotations

import re
import threading
from typing import Any

from jsonschema import Draft202012Validator

_documents: dict[str, tuple[list[tuple[re.Pattern[str], str]], dict[str, Any]]] = {}
_lock = threading.Lock()


def _document(base: str, fetch: Any) -> tuple[list[tuple[re.Pattern[str], str]], dict[str, Any]]:
    with _lock:
        if base not in _documents:
            status, _, document = fetch("GET", f"{base}/openapi.json")
            assert status == 200, f"no OpenAPI document at {base}"
            # Literal paths before templated ones: /apps/{app_id}/keys/rotate is not /apps/{app_id}/keys/{key_id}.
            templates = sorted(document["paths"], key=lambda path: (path.count("{"), -len(path)))
            patterns = [(re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"), path)
                        for path in templates]
            _documents[base] = (patterns, document)
        return _documents[base]


def check_answer(base: str, fetch: Any, method: str, path: str, status: int, headers: dict[str, str],
                 payload: Any) -> None:
    """AssertionError when the answer is not what the document says `method path` answers."""
    patterns, document = _document(base, fetch)
    bare = path.split("?", 1)[0]
    template = next((template for pattern, template in patterns if pattern.match(bare)), None)
    assert template is not None, f"{method} {bare} is not in the document"
    operation = document["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the document"
    answer = operation["responses"].get(str(status))
    assert answer is not None, f"{method} {template} answered {status}, which it does not document"
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    content_type = headers.get("content-type", "").split(";")[0]
    if content_type != "application/json":
        return
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    assert schema is not None, f"{method} {template} {status}: a JSON body the document does not describe"
    validator = Draft202012Validator({**schema, "components": document["components"]})
    problems = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
                for error in validator.iter_errors(payload)]
    assert not problems, f"{method} {template} {status} does not match its model: {problems[:5]}"
