"""`apprefer run audit`: the audit writer, and beside it the retention pruner (APPREFER_PRUNE_INTERVAL_SECONDS) and
the report's roller (APPREFER_ROLLUP_INTERVAL_SECONDS)."""

from __future__ import annotations

from services.audit.consumer import SERVICE, TOPICS, AuditHandler
from services.catalog import group_id
from services.privacy.retention import Pruner
from shared.db.session import make_engine, make_sessionmaker
from shared.reports.roller import Roller
from shared.service import run_consumer
from shared.settings import Settings


def run(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    pruner = Pruner.from_settings(sessions, settings)
    roller = Roller.from_settings(engine, settings)
    for worker in (pruner, roller):
        if worker is not None:
            worker.start()
    try:
        run_consumer(settings, service=SERVICE, group_id=group_id(SERVICE), topics=TOPICS,
                     handler=AuditHandler(sessions), engine=engine)
    finally:
        for worker in (pruner, roller):
            if worker is not None:
                worker.stop()
        engine.dispose()
