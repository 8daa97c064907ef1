"""Decoded SKAN postbacks -> one job per postback an ad network should receive. Pure.

The app's integration of a SKAN-fed network (`skan_postback`) lists ad networks:
`{"ad_networks": [{"ad_network_id", "install_url", "event_url", "event_map"}]}`. A network gets one
install postback and one postback per event occurrence of the postbacks it won, each from its URL
template with the macros filled in and a deterministic `{postback_id}` to de-duplicate with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.domain.skan.decode import DecodedRecord
from services.domain.skan.macros import postback_id, postback_values, render


def skan_jobs(network: str, decoded: Mapping[str, Any], settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    postback = orjson.loads(decoded["postback_json"])
    records = [DecodedRecord(**r) for r in orjson.loads(decoded["records_json"])]
    jobs: list[dict[str, Any]] = []
    for ad_network in settings.get("ad_networks") or []:
        if not isinstance(ad_network, Mapping) or ad_network.get("ad_network_id") != postback.get("ad-network-id"):
            continue
        event_map = {str(k): str(v) for k, v in (ad_network.get("event_map") or {}).items()}
        index = 0
        for record in records:
            is_event = record.kind == "event"
            template = ad_network.get("event_url" if is_event else "install_url")
            occurrences = max(record.count, 1) if is_event else 1
            for _ in range(occurrences):
                pid = postback_id(decoded["transaction_id"], decoded["sequence_index"], index)
                index += 1
                if not isinstance(template, str) or not template:
                    continue
                values = postback_values(postback, record, app_id=str(postback.get("app-id", "")),
                                         received_at_ms=decoded["received_at_ms"], postback_id=pid,
                                         network_event_ids=event_map)
                name = (event_map.get(record.event_name or "", record.event_name or "event") if is_event
                        else record.kind)
                jobs.append(_job(network, decoded, pid, record, name, render(template, values),
                                 ad_network["ad_network_id"]))
    return jobs


def _job(network: str, decoded: Mapping[str, Any], pid: str, record: DecodedRecord, network_event_name: str, url: str,
         ad_network_id: str) -> dict[str, Any]:
    return {
        "job_id": f"{pid}:{network}", "app_id": decoded["app_id"], "network": network, "event_id": pid,
        "event_name": record.event_name or record.kind, "network_event_name": network_event_name,
        "event_time_ms": decoded["received_at_ms"], "sandbox": False, "click_id_type": None, "click_id": None,
        "click_time_ms": None, "device": {"device_id": decoded["transaction_id"]}, "user_hashes": {},
        "revenue_amount": record.revenue, "revenue_currency": record.currency,
        "properties_json": orjson.dumps({"url": url, "ad_network_id": ad_network_id,
                                         "transaction_id": decoded["transaction_id"]}).decode(),
        "attempt": 0, "first_attempt_ms": None,
    }
