"""`apprefer run forwarder --network <name>`: forward.<name> and its retry topic -> the network."""

from __future__ import annotations

from services.forwarders.registry import network_module
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.forwarding.forwarder import DUE_HEADER, ForwarderHandler
from shared.forwarding.http import HttpClient
from shared.kafka.topics import forward_topic
from shared.service import run_consumer
from shared.settings import Settings


def run(settings: Settings, network: str) -> None:
    module = network_module(network)
    engine = make_engine(settings.effective_database_url)
    http = HttpClient(timeout=settings.forward_timeout_seconds)
    handler = ForwarderHandler(
        module=module, sessions=make_sessionmaker(engine), codec=codec(),
        secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
        http=http, base_url=settings.base_url(network), token_url=settings.google_oauth_token_url,
        retry_delays=settings.retry_delay_seconds, max_rps=settings.forward_max_rps,
    )
    topic = forward_topic(network)
    try:
        run_consumer(settings, service=f"forwarder-{network}", group_id=f"apprefer-forwarder-{network}",
                     topics=(topic, f"{topic}.retry"), handler=handler, due_header=DUE_HEADER, engine=engine)
    finally:
        http.close()
        engine.dispose()
