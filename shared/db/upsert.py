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


def upsert(session: Session, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]],
           key_columns: Sequence[str], update_columns: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE in one statement. Rows must have distinct keys
    (PostgreSQL refuses to update one row twice in a statement)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(list(rows))
    session.execute(statement.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={column: getattr(statement.excluded, column) for column in update_columns},
    ))
