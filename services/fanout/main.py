"""`apprefer run fanout`."""

from __future__ import annotations

from services.catalog import group_id
from services.fanout.consumer import SERVICE, TOPICS, FanoutHandler
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.service import run_consumer
from shared.settings import Settings


def run(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    handler = FanoutHandler(make_sessionmaker(engine), codec(), secret_key)
    try:
        run_consumer(settings, service=SERVICE, group_id=group_id(SERVICE), topics=TOPICS, handler=handler,
                     engine=engine)
    finally:
        engine.dispose()
