"""`apprefer run admin`: the admin API on APPREFER_ADMIN_HOST:APPREFER_ADMIN_PORT (default 127.0.0.1:8081)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from services.admin.app import build_app
from services.admin.connection_test import test_connection
from services.admin.store import AdminStore
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.forwarding.model import ConnectionCheck, Integration
from shared.kafka.config import producer_config
from shared.kafka.dlq import CLIENT_LOG, DeadLetterDesk
from shared.kafka.producer import SyncProducer
from shared.runtime import settle_heap
from shared.settings import Settings
from shared.web_server import serve


def run(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    store = AdminStore(make_sessionmaker(engine), secret_key)
    sessions: list[aiohttp.ClientSession] = []

    async def readiness() -> None:
        await asyncio.to_thread(store.ping)

    async def tester(integration: Integration) -> ConnectionCheck:
        if not sessions:
            sessions.append(aiohttp.ClientSession())
        return await test_connection(sessions[0], settings, integration)

    # Pages of each DLQ partition's newest records, one in full, and replays through the CLI's code; the
    # producer replays need is made on the first one (as `apprefer dlq replay` makes its own).
    dead_letters = DeadLetterDesk(
        settings.kafka_bootstrap_servers, codec(), make_sessionmaker(engine),
        producer=lambda: SyncProducer(producer_config(settings, logger=CLIENT_LOG), service="admin"))

    app = build_app(store, admin_token=settings.admin_token.get_secret_value() if settings.admin_token else None,
                    public_base_url=settings.effective_public_base_url,
                    max_body_bytes=settings.admin_max_body_bytes, readiness=readiness,
                    connection_tester=tester, dead_letters=dead_letters, settings=settings)

    async def close(_app: web.Application) -> None:
        for session in sessions:
            await session.close()
        await asyncio.to_thread(dead_letters.close)
        engine.dispose()

    app.on_cleanup.append(close)
    # As the gateway and the consumers: what is built by now out of the collector's sight, collections rarer (a
    # long report's thousands of rows set them off; a 90-day report by day: 400 -> 250 ms, docs/benchmarks.md).
    settle_heap()
    # The gateway's server and slow-client deadlines: a half-sent request must not hold the admin port either.
    asyncio.run(serve(app, name="admin service", host=settings.admin_host, port=settings.admin_port,
                      header_timeout=settings.gateway_header_timeout_seconds,
                      body_timeout=settings.gateway_body_timeout_seconds))
