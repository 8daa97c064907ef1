"""`apprefer run forwarder --network <name>`: forward.<name> and its retry topic -> the network."""

from __future__ import annotations

from services.catalog import forwarder, group_id
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.forwarding.forwarder import DUE_HEADER, ForwarderHandler, Isolation
from shared.forwarding.http import HttpClient
from shared.kafka.topics import forward_topic
from shared.networks.registry import UnknownNetwork, registry
from shared.service import run_consumer
from shared.settings import ConfigError, Settings


def run(settings: Settings, network: str) -> None:
    try:
        spec = registry().get(network)
    except UnknownNetwork as exc:
        raise ConfigError(str(exc)) from None
    base_url = settings.base_url(network)
    if not base_url and spec.default_base_url is not None:
        # Found now, not at the first conversion: every send would fail with a relative URL.
        raise ConfigError(f"no base URL for the {network} forwarder: set {spec.env_prefix}BASE_URL")
    engine = make_engine(settings.effective_database_url)
    http = HttpClient(timeout=settings.forward_timeout_seconds, concurrency=settings.forward_concurrency,
                      connect_timeout=settings.forward_connect_timeout_seconds)
    handler = ForwarderHandler(
        spec=spec, sessions=make_sessionmaker(engine), codec=codec(),
        secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
        http=http, base_url=base_url, token_url=settings.token_url(network),
        retry_delays=settings.retry_delay_seconds, max_rps=settings.forward_max_rps,
        isolation=Isolation(batch_wait_seconds=settings.forward_batch_wait_seconds,
                            breaker_failures=settings.forward_breaker_failures,
                            breaker_cooldown_seconds=settings.forward_breaker_cooldown_seconds),
    )
    topic = forward_topic(network)
    try:
        service = forwarder(network).name
        run_consumer(settings, service=service, group_id=group_id(service),
                     topics=(topic, f"{topic}.retry"), handler=handler, due_header=DUE_HEADER, engine=engine)
    finally:
        http.close()
        engine.dispose()
