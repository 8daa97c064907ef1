"""Small pieces several network payload builders share. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from shared.forwarding.model import ForwardJob, Permanent

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# iOS with tracking denied and Android with ads personalisation off report this: millions share it.
ZERO_AD_ID = "00000000-0000-0000-0000-000000000000"

# Keeps an event that passes a network's age check from turning stale while its batch is assembled and sent.
STALE_MARGIN_MS = 10 * 60 * 1000
DAY_MS = 86_400_000


def required(config: Mapping[str, Any], name: str, network: str) -> str:
    """`name` is "settings.x" or "credentials.x"; a missing value is a configuration error
    (ValueError), which the engine turns into a dead letter naming it."""
    value = config.get(name.split(".", 1)[1])
    if not value:
        raise ValueError(f"{name} is not set for the {network} integration")
    return str(value)


def is_sha256_hex(value: object) -> bool:
    """Only hashes leave apprefer: a user-data value that is not 64 hex characters is never sent."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def usable_advertising_id(value: str | None) -> str | None:
    """An IDFA or GAID as sent, or None when missing or the all-zero opted-out id."""
    return value if value and value != ZERO_AD_ID else None


def too_old(job: ForwardJob, now_ms: int, max_age_days: int, network_title: str) -> Permanent | None:
    """A Permanent outcome for an event older than the network accepts (less the margin), else None."""
    age_ms = now_ms - job.event_time_ms
    if age_ms <= max_age_days * DAY_MS - STALE_MARGIN_MS:
        return None
    age = f"{age_ms // 3_600_000} h" if age_ms < 2 * DAY_MS else f"{age_ms // DAY_MS} days"
    return Permanent(f"stale: event is {age} old; {network_title} accepts events up to {max_age_days} days old",
                     error_code="stale")


def order_fields(job: ForwardJob, currency_case: Callable[[str], str] = str.upper) -> dict[str, Any]:
    """Order id (the dedupe key), value and currency, for networks that take them in one object.
    The case of the currency code is the network's (Meta's SDK lower-cases it, TikTok's docs use
    upper case)."""
    fields: dict[str, Any] = {"order_id": job.event_id}
    if job.revenue_amount is not None:
        fields["value"] = job.revenue_amount
    if job.revenue_currency:
        fields["currency"] = currency_case(job.revenue_currency)
    return fields
