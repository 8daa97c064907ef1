"""INSERT ... ON CONFLICT for both dialects: the idempotent write every consumer relies on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def insert_ignoring_duplicates(session: Session, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]]) -> int:
    """Inserts the rows whose unique keys are new, in one statement; returns how many were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = session.execute(insert(model).values(list(rows)).on_conflict_do_nothing())
    return int(getattr(result, "rowcount", 0) or 0)
