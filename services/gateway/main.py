"""`apprefer run gateway`."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from services.gateway.app import Gateway, build_app
from services.gateway.store import GatewayStore
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.config import producer_config
from shared.kafka.producer import AsyncProducer
from shared.runtime import settle_heap
from shared.settings import Settings
from shared.web_server import serve

log = logging.getLogger(__name__)


def run(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    store = GatewayStore(make_sessionmaker(engine), secret_key)
    producer = AsyncProducer(producer_config(settings))

    async def readiness() -> None:
        producer.health()  # a producer being replaced, or failing deliveries: not ready, at once
        await asyncio.to_thread(store.ping)
        await asyncio.to_thread(producer.check_broker)

    gateway = Gateway(store=store, producer=producer, codec=codec(), max_batch=settings.gateway_max_batch,
                      key_cache_seconds=settings.api_key_cache_seconds, readiness=readiness,
                      max_record_bytes=settings.gateway_max_record_bytes,
                      skan_max_body_bytes=settings.skan_max_body_bytes,
                      skan_unknown_app_rate_per_minute=settings.skan_unknown_app_rate_per_minute)
    app = build_app(gateway, max_body_bytes=settings.gateway_max_body_bytes)

    async def close_producer(_app: web.Application) -> None:
        await asyncio.to_thread(producer.close)
        engine.dispose()

    app.on_cleanup.append(close_producer)
    settle_heap()
    asyncio.run(serve(app, name="gateway", host=settings.gateway_host, port=settings.gateway_port,
                      header_timeout=settings.gateway_header_timeout_seconds,
                      body_timeout=settings.gateway_body_timeout_seconds))


