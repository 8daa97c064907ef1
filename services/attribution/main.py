"""`apprefer run attribution`."""

from __future__ import annotations

from services.attribution.consumer import SERVICE, TOPICS, AttributionHandler
from services.catalog import group_id
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.service import run_consumer
from shared.settings import Settings


def run(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    handler = AttributionHandler(make_sessionmaker(engine), codec())
    try:
        run_consumer(settings, service=SERVICE, group_id=group_id(SERVICE), topics=TOPICS, handler=handler,
                     engine=engine)
    finally:
        engine.dispose()
