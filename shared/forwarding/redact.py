"""Secrets never leave in an error text: the audit log, retry and dead-letter headers, logs and API answers
all carry the reasons the forwarder writes, and a transport error or a network's answer may echo a URL
with the token in it (Meta takes `access_token` as a query parameter)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
# Credential-looking query parameters and JSON fields, whatever their value: a token we never saw
# (a network's own, an old one) is caught as well as the integration's.
_NAMED = re.compile(
    r"""(?ix)
    (access_token|refresh_token|client_secret|developer_token|developer-token|api_key|apikey|token|secret|password)
    (["']?\s*[=:]\s*["']?)
    ([^&\s"',;}]+)""")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
MIN_SECRET_LENGTH = 4  # shorter values (flags, ids like "1") would blank ordinary words


def secret_values(credentials: Mapping[str, Any], *extra: str | None) -> list[str]:
    """Every string in an integration's credentials (nested too), and any extra secret (an access token)."""
    found: list[str] = [value for value in extra if value]

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(credentials)
    # Longest first, so a secret that contains another is replaced whole.
    return sorted({v for v in found if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _NAMED.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
