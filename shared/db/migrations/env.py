"""Alembic environment: the URL comes from `apprefer db upgrade` (config attribute) or Settings."""

from __future__ import annotations

from alembic import context

from shared.db.models import Base
from shared.db.session import make_engine
from shared.settings import get_settings

config = context.config
url = config.attributes.get("database_url") or get_settings().effective_database_url

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as connection:
        # render_as_batch: SQLite can only ALTER a table by copying it, which batch mode does.
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
