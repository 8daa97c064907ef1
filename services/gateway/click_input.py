"""Ad clicks (tracking-link redirects and server-to-server posts) into clicks.raw records. Pure.

Personal data (services/privacy/personal_data.py): a known parameter (click ids, advertising ids, campaign,
ad set and ad ids) shaped like an email address or a phone number is an InputError; any other parameter
named like personal data (``email``, ``phone``, ...) is kept hashed; one whose value looks like an email
address or a phone number is dropped, as is such a network or campaign name.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from services.domain.matching import (
    click_id_types,
    click_ids_in,
    device_fingerprint,
    network_for_click_id_type,
    usable_ad_id,
)
from services.privacy.personal_data import Findings, identifier_problem, report_drops, scrub, scrub_text
from shared.errors import InputError
from shared.networks.registry import registry

# Parameters with a meaning, besides every network's click id (any case: Snap's ScCid); anything else on a
# click is kept as a property.
KNOWN_PARAMS = {"click_id", "idfa", "gaid", "campaign_id", "adset_id", "ad_id"}
MAX_VALUE_LEN = 500
MAX_PROPERTIES = 50


def is_click_id_param(name: str) -> bool:
    return registry().click_id_type_of(name) is not None


def click_record(
    params: Mapping[str, Any],
    *,
    app_id: str,
    link_id: str | None,
    link_network: str | None,
    link_campaign: str | None,
    ip: str | None,
    user_agent: str | None,
    clicked_at_ms: int,
    sandbox: bool = False,
    entry: str = "clicks",
) -> dict[str, Any]:
    """``entry`` names the route in the personal-data metric: ``clicks`` or ``tracking_link``."""
    values: dict[str, str] = {}
    for name, value in params.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InputError(name, "must be a string")
        text = str(value).strip()
        if len(text) > MAX_VALUE_LEN:
            raise InputError(name, f"longer than {MAX_VALUE_LEN} characters")
        if name in KNOWN_PARAMS or is_click_id_param(name):
            problem = identifier_problem(text)
            if problem is not None:
                raise InputError(name, problem)
        values[name] = text

    # The first network click id present wins; the link's network is the fallback.
    click_ids = click_ids_in(values)
    click_id_type = next((t for t in click_id_types() if t in click_ids), None)
    network = network_for_click_id_type(click_id_type) if click_id_type else link_network
    properties = {k: v for k, v in values.items()
                  if not is_click_id_param(k) and (k not in KNOWN_PARAMS or k.endswith("_id"))}
    properties.pop("click_id", None)
    if len(properties) > MAX_PROPERTIES:
        raise InputError("properties", f"at most {MAX_PROPERTIES} extra parameters")
    findings = Findings()
    properties = scrub(properties, "", findings)
    network = scrub_text(network, "network", findings)
    link_campaign = scrub_text(link_campaign, "campaign", findings)
    report_drops(entry, findings, app_id=app_id, link_id=link_id)
    return {
        # A `click_id` parameter (a partner's own unique click id) becomes our key, so the SDK can
        # pass it back as referrer click_id; otherwise the click gets a fresh one.
        "click_key": values.get("click_id") or uuid.uuid4().hex,
        "app_id": app_id,
        "link_id": link_id,
        "network": network,
        "campaign": link_campaign or values.get("campaign_id"),
        "click_id_type": click_id_type,
        "click_id": click_ids.get(click_id_type) if click_id_type else None,
        "idfa": usable_ad_id(values.get("idfa")),
        "gaid": usable_ad_id(values.get("gaid")),
        "fingerprint": device_fingerprint(ip, user_agent),
        "clicked_at_ms": clicked_at_ms,
        "sandbox": sandbox,
        "properties": properties,
    }
