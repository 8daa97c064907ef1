"""Small pieces several network payload builders share. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shared.forwarding.model import ForwardJob


def required(config: Mapping[str, Any], name: str, network: str) -> str:
    """`name` is "settings.x" or "credentials.x"; a missing value is a configuration error
    (ValueError), which the engine turns into a dead letter naming it."""
    value = config.get(name.split(".", 1)[1])
    if not value:
        raise ValueError(f"{name} is not set for the {network} integration")
    return str(value)


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
