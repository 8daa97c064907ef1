"""`apprefer run audit`."""

from __future__ import annotations

from services.audit.consumer import SERVICE, TOPICS, AuditHandler
from shared.db.session import make_engine, make_sessionmaker
from shared.service import run_consumer
from shared.settings import Settings


def run(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    try:
        run_consumer(settings, service=SERVICE, group_id="apprefer-audit", topics=TOPICS,
                     handler=AuditHandler(make_sessionmaker(engine)), engine=engine)
    finally:
        engine.dispose()
