"""`apprefer run gateway`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import web

from services.gateway.app import Gateway, build_app
from services.gateway.connection_test import test_connection
from services.gateway.store import GatewayStore
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.forwarding.model import ConnectionCheck, Integration
from shared.kafka.config import producer_config
from shared.kafka.dlq import DlqFilter, dead_letter_topics, find_dead_letters
from shared.kafka.producer import AsyncProducer
from shared.runtime import settle_heap
from shared.settings import Settings

log = logging.getLogger(__name__)


def run(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    store = GatewayStore(make_sessionmaker(engine), secret_key)
    producer = AsyncProducer(producer_config(settings))

    async def readiness() -> None:
        await asyncio.to_thread(store.ping)
        await asyncio.to_thread(producer.check_broker)

    gateway = Gateway(store=store, producer=producer, codec=codec(), max_batch=settings.gateway_max_batch,
                      key_cache_seconds=settings.api_key_cache_seconds, readiness=readiness)
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    public_base_url = f"http://{settings.gateway_host}:{settings.gateway_port}"
    sessions: list[aiohttp.ClientSession] = []

    async def tester(integration: Integration) -> ConnectionCheck:
        if not sessions:
            sessions.append(aiohttp.ClientSession())
        return await test_connection(sessions[0], settings, integration)

    def dead_letters(network: str | None, letter_filter: DlqFilter, limit: int) -> list[dict[str, Any]]:
        found = find_dead_letters(settings.kafka_bootstrap_servers, dead_letter_topics(network), letter_filter,
                                  codec())
        return [letter.summary() for letter in found[:limit]]

    app = build_app(gateway, store, admin_token=admin_token, public_base_url=public_base_url,
                    max_body_bytes=settings.gateway_max_body_bytes, connection_tester=tester,
                    dead_letters=dead_letters)

    async def close_producer(_app: web.Application) -> None:
        for session in sessions:
            await session.close()
        await asyncio.to_thread(producer.close)
        engine.dispose()

    app.on_cleanup.append(close_producer)
    settle_heap()
    log.info("gateway listening", extra={"host": settings.gateway_host, "port": settings.gateway_port})
    # run_app handles SIGINT/SIGTERM: stop accepting, finish in-flight requests, then cleanup.
    web.run_app(app, host=settings.gateway_host, port=settings.gateway_port, print=None,
                access_log=None, shutdown_timeout=10)
