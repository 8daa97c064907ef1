"""What a network module works with: jobs in, an HTTP request out, a response back, outcomes.

Everything here is plain data, so a network's payload builder and response classifier are pure
functions tested without a broker or a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    idfa: str | None = None
    gaid: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    os: str | None = None
    os_version: str | None = None
    model: str | None = None
    locale: str | None = None
    att_status: str | None = None
    app_version: str | None = None


@dataclass(frozen=True, slots=True)
class ForwardJob:
    """One conversion for one network; the record on forward.<network>."""

    job_id: str
    app_id: str
    network: str
    event_id: str
    event_name: str
    network_event_name: str
    event_time_ms: int
    device: Device
    sandbox: bool = False
    click_id_type: str | None = None
    click_id: str | None = None
    click_time_ms: int | None = None
    user_hashes: Mapping[str, str] = field(default_factory=dict)
    revenue_amount: float | None = None
    revenue_currency: str | None = None
    properties_json: str = "{}"
    attempt: int = 0
    first_attempt_ms: int | None = None

    @property
    def properties(self) -> dict[str, Any]:
        value = orjson.loads(self.properties_json or "{}")
        return value if isinstance(value, dict) else {}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ForwardJob:
        return cls(**{**record, "device": Device(**record["device"])})

    def to_record(self) -> dict[str, Any]:
        from dataclasses import asdict

        record = asdict(self)
        record["user_hashes"] = dict(self.user_hashes)
        return record


@dataclass(frozen=True, slots=True)
class Integration:
    """An app's configuration for one network, credentials decrypted (in memory only)."""

    app_id: str
    network: str
    settings: Mapping[str, Any]
    credentials: Mapping[str, Any]
    event_map: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON (a malformed answer is data, not a crash)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def retry_after_seconds(self) -> float | None:
        value = self.headers.get("Retry-After") or self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


# --- outcomes: what a classifier decides, per job ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """The network has it (including "already have it": duplicates count as delivered)."""

    detail: str | None = None


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Transient: try again, not before `after_seconds` when the network said so."""

    reason: str
    after_seconds: float | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshCredentials:
    """The access token expired: refresh it and retry once."""

    reason: str
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class Permanent:
    """Never retry as is: the job goes to the dead-letter topic with this reason."""

    reason: str
    error_code: str | None = None


Outcome = Delivered | RetryLater | RefreshCredentials | Permanent


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    ok: bool
    detail: str
