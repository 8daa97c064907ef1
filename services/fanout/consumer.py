"""Fanout: events.attributed -> one job per enabled integration on forward.<network>.

Sandbox events and events a network cannot use produce no job; they are audited as `sandbox` or
`skipped` so the audit log explains every event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from services.catalog import consumer_topics
from services.fanout.mapping import route
from services.fanout.skan_routing import skan_jobs
from shared.avro import AvroCodec
from shared.forwarding.audit import audit_out
from shared.forwarding.integrations import IntegrationCache
from shared.forwarding.model import Integration
from shared.kafka.records import InRecord, OutRecord
from shared.kafka.topics import forward_topic
from shared.networks.registry import registry
from shared.networks.spec import Feed

SERVICE = "fanout"
TOPICS = consumer_topics(SERVICE)


def forward_job(event: dict[str, Any], attribution: dict[str, Any], network: str, network_event_name: str
                ) -> dict[str, Any]:
    return {
        "job_id": f"{event['event_id']}:{network}", "app_id": event["app_id"], "network": network,
        "event_id": event["event_id"], "event_name": event["event_name"], "network_event_name": network_event_name,
        "event_time_ms": event["event_time_ms"], "sandbox": event["sandbox"],
        "click_id_type": attribution["click_id_type"], "click_id": attribution["click_id"],
        "click_time_ms": attribution["click_time_ms"], "device": event["device"],
        "user_hashes": event["user_hashes"], "revenue_amount": event["revenue_amount"],
        "revenue_currency": event["revenue_currency"], "properties_json": event["properties_json"],
        "attempt": 0, "first_attempt_ms": None,
    }


def _app_id(record: InRecord) -> str:
    if record.schema == "apprefer.SkanDecoded":
        return str(record.value["app_id"])
    return str(record.value["event"]["app_id"])


class FanoutHandler:
    SCHEMAS = frozenset({"apprefer.AttributedEvent", "apprefer.SkanDecoded"})  # the loop dead-letters any other

    def __init__(self, sessions: sessionmaker[Session], codec: AvroCodec, secret_key: str | None) -> None:
        self._sessions = sessions
        self._codec = codec
        self._integrations = IntegrationCache(secret_key)
        self._batch_integrations: dict[str, dict[str, Integration]] = {}

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        with self._sessions() as session:
            # Each app's integrations once per batch (one version check per app), not per record.
            apps = {_app_id(r) for r in records}
            self._batch_integrations = {app: self._integrations.for_app(session, app) for app in apps if app}
        return [out for record in records for out in self._fan_out(record)]

    def _fan_out(self, record: InRecord) -> list[OutRecord]:
        if record.schema == "apprefer.SkanDecoded":
            return self._fan_out_skan(record)
        event, attribution = record.value["event"], record.value["attribution"]
        integrations = self._batch_integrations.get(event["app_id"], {})
        outputs: list[OutRecord] = []
        for spec in registry().fed_by(Feed.CONVERSIONS):
            network = spec.name
            integration = integrations.get(network)
            if integration is None or not integration.enabled:
                continue

            def audit(status: str, detail: str, network: str = network) -> OutRecord:
                return audit_out(self._codec, app_id=event["app_id"], event_id=event["event_id"],
                                 event_name=event["event_name"], network=network, status=status, detail=detail)

            if event["sandbox"]:
                # Test traffic (pk_test_ keys, RevenueCat sandbox) flows through every stage but never
                # reaches a network: audited as such, whatever the network would have made of it.
                outputs.append(audit("sandbox", "sandbox (pk_test_) event: not forwarded"))
                continue
            decision = route(spec, event["event_name"], attribution, integration.settings, integration.event_map)
            if decision.network_event_name is None:
                outputs.append(audit("skipped", decision.skip_reason or "skipped"))
            else:
                job = forward_job(event, attribution, network, decision.network_event_name)
                outputs.append(OutRecord(topic=forward_topic(network), key=record.key,
                                         value=self._codec.encode("apprefer.ForwardJob", job), origin=record))
        return outputs

    def _fan_out_skan(self, record: InRecord) -> list[OutRecord]:
        integrations = self._batch_integrations.get(record.value["app_id"], {})
        outputs: list[OutRecord] = []
        for spec in registry().fed_by(Feed.SKAN):
            integration = integrations.get(spec.name)
            if integration is None or not integration.enabled:
                continue
            outputs += [OutRecord(topic=forward_topic(spec.name), key=record.key,
                                  value=self._codec.encode("apprefer.ForwardJob", job), origin=record)
                        for job in skan_jobs(spec.name, record.value, integration.settings)]
        return outputs
