"""The admin service's OpenAPI document."""

from __future__ import annotations

from typing import Any

from services.gateway.openapi import admin_document


def document() -> dict[str, Any]:
    return admin_document()
