"""Configuration: the one place that reads the environment.

Every variable is documented here with its default; services receive a `Settings` instance and
never look at `os.environ` themselves.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DAY_MS = 86_400_000
# The longest lookback and re-attribution window an app may set (AppIn, services/gateway/admin.py;
# tests/unit/test_retention.py keeps them equal): clicks and installs must be kept at least this long.
MAX_LOOKBACK_DAYS = 90
MAX_REATTRIBUTION_DAYS = 365


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # Kafka. Unset in `apprefer dev` means "start the bundled broker".
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    topic_partitions: int = Field(6, alias="APPREFER_TOPIC_PARTITIONS")
    topic_replication: int = Field(1, alias="APPREFER_TOPIC_REPLICATION")
    # retention.ms of the topics `apprefer topics create` makes (existing topics are left as they are): records
    # on Kafka, erased devices' included, age out after this.
    topic_retention_ms: int = Field(7 * DAY_MS, alias="APPREFER_TOPIC_RETENTION_MS", gt=0)
    # Consumer-group session timeout; the bundled broker joins groups in about half of it.
    kafka_session_timeout_ms: int = Field(6000, alias="APPREFER_KAFKA_SESSION_TIMEOUT_MS")
    consumer_batch_size: int = Field(500, alias="APPREFER_CONSUMER_BATCH_SIZE")
    producer_linger_ms: int = Field(2, alias="APPREFER_PRODUCER_LINGER_MS")
    producer_queue_max_messages: int = Field(100_000, alias="APPREFER_PRODUCER_QUEUE_MAX_MESSAGES")
    # How long a record may wait for the broker before the gateway gives up and answers 503.
    producer_delivery_timeout_ms: int = Field(15_000, alias="APPREFER_PRODUCER_DELIVERY_TIMEOUT_MS")
    # The largest record a producer sends (librdkafka's message.max.bytes; Kafka brokers default to
    # 1,048,588). Set it to your cluster's limit: a larger record is refused and dead-lettered.
    kafka_max_record_bytes: int = Field(1_000_000, alias="APPREFER_KAFKA_MAX_RECORD_BYTES", ge=100_000)

    # Storage. Unset means SQLite under the data dir.
    database_url: str | None = Field(None, alias="DATABASE_URL")
    data_dir: Path = Field(Path("./var"), alias="APPREFER_DATA_DIR")

    # Secrets.
    secret_key: SecretStr | None = Field(None, alias="APPREFER_SECRET_KEY")
    admin_token: SecretStr | None = Field(None, alias="APPREFER_ADMIN_TOKEN")

    # Gateway.
    gateway_host: str = Field("127.0.0.1", alias="APPREFER_GATEWAY_HOST")
    gateway_port: int = Field(8080, alias="APPREFER_GATEWAY_PORT")
    # The URL devices reach the gateway at: tracking links the admin API makes start with it. Unset: the
    # gateway's own host and port.
    public_base_url: str | None = Field(None, alias="APPREFER_PUBLIC_BASE_URL")

    # Admin service (the management API and dashboard): not on the public port; keep it on a private network.
    admin_host: str = Field("127.0.0.1", alias="APPREFER_ADMIN_HOST")
    admin_port: int = Field(8081, alias="APPREFER_ADMIN_PORT")
    admin_max_body_bytes: int = Field(1_048_576, alias="APPREFER_ADMIN_MAX_BODY_BYTES")
    # The dashboard the admin service serves at /: a sign-in lasts this many hours (at most 30 days), then the
    # admin token is asked again. Sessions are stored in the database: restarts and replicas keep them.
    dashboard_session_hours: float = Field(12.0, alias="APPREFER_DASHBOARD_SESSION_HOURS", gt=0, le=720)
    # Behind a proxy that ends TLS the admin service sees plain HTTP: true marks the dashboard's cookies Secure
    # all the same (else they are Secure only on a request that came over HTTPS).
    dashboard_secure_cookies: bool = Field(False, alias="APPREFER_DASHBOARD_SECURE_COOKIES")
    gateway_max_body_bytes: int = Field(1_048_576, alias="APPREFER_GATEWAY_MAX_BODY_BYTES")
    gateway_max_batch: int = Field(500, alias="APPREFER_GATEWAY_MAX_BATCH")
    # Slow clients: a request's head (request line and headers) must be complete this many seconds after
    # the connection opened or its first byte arrived, and its body this many seconds after the head; else
    # the connection is dropped (a late body is answered 408). aiohttp itself never times these out.
    gateway_header_timeout_seconds: float = Field(10.0, alias="APPREFER_GATEWAY_HEADER_TIMEOUT_SECONDS", gt=0)
    gateway_body_timeout_seconds: float = Field(30.0, alias="APPREFER_GATEWAY_BODY_TIMEOUT_SECONDS", gt=0)
    # Room kept under the record limit for what later stages add to an event (its attribution, job
    # fields, retry and dead-letter headers: a few KB): the gateway refuses larger events with 413.
    gateway_record_margin_bytes: int = Field(65_536, alias="APPREFER_GATEWAY_RECORD_MARGIN_BYTES", ge=0)
    api_key_cache_seconds: float = Field(30.0, alias="APPREFER_API_KEY_CACHE_SECONDS")
    # SKAN routes are unauthenticated and real postbacks are under 4 KB: a limit of their own, far below the above.
    skan_max_body_bytes: int = Field(16_384, alias="APPREFER_SKAN_MAX_BODY_BYTES", gt=0)
    # Postbacks for an app id no app has, per source address (a token bucket); beyond it, 429.
    skan_unknown_app_rate_per_minute: float = Field(60.0, alias="APPREFER_SKAN_UNKNOWN_APP_RATE_PER_MINUTE", gt=0)

    # Development runner.
    dev_broker_port: int = Field(9092, alias="APPREFER_DEV_BROKER_PORT")

    # Forwarding. Base URLs are settable so tests and staging point forwarders at fakes.
    # Each registered network's APPREFER_<NAME>_BASE_URL and APPREFER_<NAME>_TOKEN_URL (the names derive from
    # the registry, so they are read by _NetworkUrls, not declared here), keyed "<name>.base" / "<name>.token".
    network_urls: dict[str, str] = Field(default_factory=dict)
    # Seconds before each retry of a transient failure; attempts end after the last one.
    retry_delays: str = Field("10,60,300,1800,7200", alias="APPREFER_RETRY_DELAYS")
    # Each request to a network: connect within this, answer within that (a hung endpoint costs no more).
    forward_connect_timeout_seconds: float = Field(3.0, alias="APPREFER_FORWARD_CONNECT_TIMEOUT_SECONDS", gt=0)
    forward_timeout_seconds: float = Field(10.0, alias="APPREFER_FORWARD_TIMEOUT_SECONDS", gt=0)
    # Requests in flight at once per forwarder process (different apps, chunks of one app).
    forward_concurrency: int = Field(64, alias="APPREFER_FORWARD_CONCURRENCY", ge=1)
    # A batch waits this long for its answers; slower requests finish in the background, their jobs parked.
    forward_batch_wait_seconds: float = Field(1.0, alias="APPREFER_FORWARD_BATCH_WAIT_SECONDS", gt=0)
    # Consecutive transport failures that open an integration's circuit breaker, and its cool-down.
    forward_breaker_failures: int = Field(5, alias="APPREFER_FORWARD_BREAKER_FAILURES", ge=1)
    forward_breaker_cooldown_seconds: float = Field(30.0, alias="APPREFER_FORWARD_BREAKER_COOLDOWN_SECONDS", ge=0)
    # Ceiling of each forwarder process's request rate, all apps together; each integration has its own adaptive
    # rate under it, halved on that integration's rate limiting. 100 would cap 200 apps at 0.5 requests/s each.
    forward_max_rps: float = Field(1000.0, alias="APPREFER_FORWARD_MAX_RPS", gt=0)

    # Retention: rows older than these are deleted by `apprefer db prune` and by the audit service every
    # APPREFER_PRUNE_INTERVAL_SECONDS (0 = never). services/privacy/retention.py says what each window bounds.
    retention_clicks_days: int = Field(MAX_LOOKBACK_DAYS, alias="APPREFER_RETENTION_CLICKS_DAYS")
    retention_installs_days: int = Field(MAX_REATTRIBUTION_DAYS, alias="APPREFER_RETENTION_INSTALLS_DAYS")
    retention_audit_days: int = Field(90, alias="APPREFER_RETENTION_AUDIT_DAYS", ge=1)
    retention_skan_days: int = Field(180, alias="APPREFER_RETENTION_SKAN_DAYS", ge=1)
    retention_deliveries_days: int = Field(30, alias="APPREFER_RETENTION_DELIVERIES_DAYS", ge=1)
    prune_interval_seconds: float = Field(3600.0, alias="APPREFER_PRUNE_INTERVAL_SECONDS", ge=0)
    prune_batch_rows: int = Field(5000, alias="APPREFER_PRUNE_BATCH_ROWS", ge=1)
    # The report's daily rollups (shared/reports/roller.py): rolled by the audit service every interval (0 = never:
    # reports read the raw rows only), each UTC day once it has been over this long.
    rollup_interval_seconds: float = Field(300.0, alias="APPREFER_ROLLUP_INTERVAL_SECONDS", ge=0)
    rollup_settle_seconds: float = Field(900.0, alias="APPREFER_ROLLUP_SETTLE_SECONDS", ge=0)

    # Consumers expose /healthz, /readyz and /metrics on this port when set (0 = off), on this address: loopback
    # by default; 0.0.0.0 in a container, where probes and Prometheus come from outside it.
    metrics_port: int = Field(0, alias="APPREFER_METRICS_PORT")
    metrics_host: str = Field("127.0.0.1", alias="APPREFER_METRICS_HOST", min_length=1)
    # Where the dashboard's Health page asks each service for /readyz and /metrics: comma-separated name=url
    # (gateway=http://10.0.0.5:8080,attribution=http://10.0.0.6:9100). Set: exactly those services. Unset: every
    # service where `apprefer dev` puts it on this host (services/catalog.py, default_health_targets).
    health_targets: str = Field("", alias="APPREFER_HEALTH_TARGETS")
    log_level: str = Field("INFO", alias="APPREFER_LOG_LEVEL")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _NetworkUrls(settings_cls), dotenv_settings, file_secret_settings

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, url: str | None) -> str | None:
        # Users write postgresql://; SQLAlchemy would pick psycopg2, which we do not ship.
        if url and url.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url or None

    @field_validator("retention_clicks_days")
    @classmethod
    def _clicks_outlive_lookback(cls, days: int) -> int:
        if days < MAX_LOOKBACK_DAYS:
            raise ValueError(f"must be at least {MAX_LOOKBACK_DAYS} days: an app may look back that far for the "
                             "click of an install, and a pruned click cannot be matched")
        return days

    @field_validator("retention_installs_days")
    @classmethod
    def _installs_outlive_reattribution(cls, days: int) -> int:
        if days < MAX_REATTRIBUTION_DAYS:
            raise ValueError(f"must be at least {MAX_REATTRIBUTION_DAYS} days: an app's re-attribution window may "
                             "be that long, and a reinstall whose install was pruned is attributed afresh")
        return days

    @field_validator("retention_deliveries_days")
    @classmethod
    def _ledger_outlives_topics(cls, days: int, info: ValidationInfo) -> int:
        # A record still on Kafka can be redelivered or replayed: its delivery must still be in the ledger.
        topic_retention_ms = info.data.get("topic_retention_ms")  # absent when it was itself invalid
        if topic_retention_ms is not None and days * DAY_MS < topic_retention_ms:
            raise ValueError(f"must cover APPREFER_TOPIC_RETENTION_MS ({topic_retention_ms / DAY_MS:g} days): a "
                             "job replayed from a topic after its delivery left the ledger would be sent again")
        return days

    @field_validator("retry_delays")
    @classmethod
    def _delays(cls, value: str) -> str:
        try:
            delays = [float(d) for d in value.split(",") if d.strip()]
        except ValueError:
            raise ValueError("APPREFER_RETRY_DELAYS must be comma-separated seconds, e.g. 10,60,300") from None
        if not delays or any(d < 0 for d in delays):
            raise ValueError("APPREFER_RETRY_DELAYS needs at least one non-negative delay")
        return value

    @field_validator("health_targets")
    @classmethod
    def _health_targets(cls, value: str) -> str:
        parse_health_targets(value)
        return value

    @property
    def health_target_urls(self) -> dict[str, str]:
        """APPREFER_HEALTH_TARGETS by service name (empty when unset: see default_health_targets)."""
        return parse_health_targets(self.health_targets)

    @property
    def gateway_max_record_bytes(self) -> int:
        """The largest record the gateway produces: the record limit less the margin."""
        return self.kafka_max_record_bytes - self.gateway_record_margin_bytes

    @property
    def retry_delay_seconds(self) -> list[float]:
        return [float(d) for d in self.retry_delays.split(",") if d.strip()]

    def base_url(self, network: str) -> str:
        """APPREFER_<NAME>_BASE_URL, else the network's default ("" when it has none)."""
        from shared.networks.registry import registry

        spec = registry().get(network)
        return self.network_urls.get(f"{network}.base", spec.default_base_url or "")

    def token_url(self, network: str) -> str:
        """APPREFER_<NAME>_TOKEN_URL, else the network's default ("" when it refreshes no token)."""
        from shared.networks.registry import registry

        spec = registry().get(network)
        return self.network_urls.get(f"{network}.token", spec.default_token_url or "")

    @property
    def effective_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'apprefer.db').resolve()}"

    def require_secret_key(self) -> str:
        if self.secret_key is None or not self.secret_key.get_secret_value():
            raise ConfigError("APPREFER_SECRET_KEY is not set: it encrypts integration credentials")
        return self.secret_key.get_secret_value()


class _NetworkUrls(PydanticBaseSettingsSource):
    """APPREFER_<NAME>_BASE_URL and APPREFER_<NAME>_TOKEN_URL of every registered network."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        from shared.networks.registry import registry

        # A variable set blank is kept: a forwarder refuses to start on it rather than use the default.
        urls = {f"{spec.name}.{kind.lower()}": os.environ[variable].strip()
                for spec in registry().networks for kind in ("BASE", "TOKEN")
                if (variable := f"{spec.env_prefix}{kind}_URL") in os.environ}
        return {"network_urls": urls} if urls else {}


_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_health_targets(value: str) -> dict[str, str]:
    """`name=url,name=url` as {name: url without a trailing /}; ValueError naming the entry that is not one."""
    targets: dict[str, str] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        name, equals, url = (part.strip() for part in entry.partition("="))
        where = f"APPREFER_HEALTH_TARGETS entry {entry!r}"
        if not equals or not _TARGET_NAME.fullmatch(name):
            raise ValueError(f"{where} is not name=url (e.g. gateway=http://127.0.0.1:8080)")
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (ValueError for a port that is not a number or out of range)
        except ValueError:
            raise ValueError(f"{where}: the port of {url!r} is not a port number") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"{where}: {url!r} is not an http:// or https:// base URL")
        if name in targets:
            raise ValueError(f"{where}: {name!r} is given twice")
        targets[name] = url.rstrip("/")
    return targets


class ConfigError(RuntimeError):
    """A required setting is missing or unusable."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
