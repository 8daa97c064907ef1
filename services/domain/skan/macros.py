"""Decoded SKAdNetwork postbacks to ad networks: URL templates with {macros}. Pure (stdlib only).

Each enabled ad network has an ``install_url`` and an ``event_url`` template. For each postback we send one
install postback (window 0) and one postback per event occurrence (decode.occurrences), each rendered with
:func:`postback_values` and :func:`render`. ``{postback_id}`` is deterministic (:func:`postback_id`), so a
retry of the same decoded postback carries the same id and the network can de-duplicate it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from services.domain.skan.decode import DecodedRecord, estimated_install_time
from services.domain.skan.postback_input import flag, postback_timestamp_ms, source_identifier

__all__ = [
    "ATTRIBUTION_SOURCE_MACRO",
    "MACROS",
    "postback_id",
    "postback_values",
    "render",
]

# Every documented macro; postback_values() returns each of them (missing values as "").
MACROS: tuple[str, ...] = (
    "app_id",
    "transaction_id",
    "postback_id",
    "attribution_source",
    "event_name",
    "network_event_id",
    "event_revenue",
    "event_revenue_currency",
    "campaign_id",
    "campaign_name",
    "skan_campaign_id",
    "source_identifier",
    "source_app_id",
    "source_domain",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "country",
    "redownload",
    "fidelity_type",
    "did_win",
    "postback_sequence_index",
    "conversion_value",
    "coarse_conversion_value",
    "min_event_counter",
    "max_event_counter",
    "min_event_revenue",
    "max_event_revenue",
    "min_time_post_install",
    "max_time_post_install",
    "install_timestamp",
    "postback_timestamp",
    "received_timestamp",
)
_DOCUMENTED = frozenset(MACROS)
# The guide's value of the attribution_source macro (the stored records say "skadnetwork").
ATTRIBUTION_SOURCE_MACRO = "SKAdNetwork"
_MACRO = re.compile(r"\{([A-Za-z0-9_]+)\}")
# Fixed namespace: changing it would change every id and break the networks' de-duplication of retries.
_POSTBACK_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://apprefer/skan/decoded-postback")


def _text(value: object) -> str:
    """Plain text of a value: "" for None, true/false, integers without ".0", decimals without exponent."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    return str(value)


def render(template: str, values: Mapping[str, object]) -> str:
    """Replace each ``{name}`` by its URL-encoded value (every reserved character, space as %20).

    A documented macro (MACROS) without a value, or with None, becomes empty. A ``{name}`` that is neither
    documented nor in ``values`` is left as it is: it may be the network's own literal braces, and a typo
    stays visible in the audit record instead of vanishing.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return quote(_text(values[name]), safe="")
        if name in _DOCUMENTED:
            return ""
        return match.group(0)

    return _MACRO.sub(substitute, template)


def postback_id(transaction_id: str, sequence_index: int, record_index: int) -> str:
    """A UUID (version 5) derived from the transaction id, the window and the record's index: unique per
    decoded postback, and the same on every retry and every re-run of the decoder."""
    return str(uuid.uuid5(_POSTBACK_ID_NAMESPACE, f"{transaction_id}\x1f{sequence_index}\x1f{record_index}"))


def _seconds(moment: datetime) -> str:
    return str(math.floor(moment.timestamp()))


def postback_values(
    postback: Mapping[str, Any],
    record: DecodedRecord,
    *,
    app_id: str,
    received_at_ms: int,
    postback_id: str,
    install_time: datetime | None = None,
    network_event_ids: Mapping[str, str] | None = None,
    include_transaction_id: bool = True,
) -> dict[str, str]:
    """Every macro of MACROS as unencoded text ("" when unknown); render() encodes.

    - ``app_id``: our app id as the network knows it. Timestamps are 10-digit epoch seconds:
      ``install_timestamp`` = ``install_time`` (default: decode.estimated_install_time of the postback),
      ``postback_timestamp`` = the network's ``timestamp``, ``received_timestamp`` = ``received_at_ms``.
    - Event fields (event name, revenue, counters, time post install) are empty on install postbacks.
    - ``network_event_id``: the network's id for the record's event, from the integration's mapping.
    - ``include_transaction_id``: the guide shares the transaction id only when the advertiser allows it.
    """
    received_at = datetime.fromtimestamp(received_at_ms / 1000, tz=UTC)
    if install_time is None:
        install_time = estimated_install_time(postback, received_at)
    sent_ms = postback_timestamp_ms(postback)
    is_event = record.kind == "event"
    event_name = record.event_name if is_event else None
    country = postback.get("ad-network-country-code")
    values: dict[str, object] = {
        "app_id": app_id,
        "transaction_id": postback.get("transaction-id") if include_transaction_id else None,
        "postback_id": postback_id,
        "attribution_source": ATTRIBUTION_SOURCE_MACRO,
        "event_name": event_name,
        "network_event_id": (network_event_ids or {}).get(event_name) if event_name else None,
        "event_revenue": record.revenue if is_event else None,
        "event_revenue_currency": record.currency if is_event and record.revenue is not None else None,
        "campaign_id": postback.get("ad-network-campaign-id"),
        "campaign_name": postback.get("ad-network-campaign-name"),
        "skan_campaign_id": postback.get("campaign-id"),
        "source_identifier": source_identifier(postback),
        "source_app_id": postback.get("source-app-id"),
        "source_domain": postback.get("source-domain"),
        "adset_id": postback.get("ad-network-adset-id"),
        "adset_name": postback.get("ad-network-adset-name"),
        "ad_id": postback.get("ad-network-ad-id"),
        "ad_name": postback.get("ad-network-ad-name"),
        "country": country.upper() if isinstance(country, str) else country,
        "redownload": flag(postback.get("redownload")),
        "fidelity_type": postback.get("fidelity-type"),
        "did_win": flag(postback.get("did-win")),
        "postback_sequence_index": record.postback_sequence_index,  # 0 for SKAN 1-3
        "conversion_value": record.conversion_value,
        "coarse_conversion_value": record.coarse_conversion_value,
        "min_event_counter": record.min_count if is_event else None,
        "max_event_counter": record.max_count if is_event else None,
        "min_event_revenue": record.min_revenue if is_event else None,
        "max_event_revenue": record.max_revenue if is_event else None,
        "min_time_post_install": record.min_hours if is_event else None,
        "max_time_post_install": record.max_hours if is_event else None,
        "install_timestamp": _seconds(install_time),
        "postback_timestamp": str(sent_ms // 1000) if sent_ms is not None else None,
        "received_timestamp": str(received_at_ms // 1000),
    }
    # Only scalars reach a URL: a nested object from a forwarder's body would render as Python repr.
    return {
        name: _text(value) if value is None or isinstance(value, str | int | float) else ""
        for name, value in values.items()
    }
