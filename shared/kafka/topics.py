"""Every topic apprefer uses, and `apprefer topics create`."""

from __future__ import annotations

import logging

from confluent_kafka.admin import AdminClient, NewTopic

from shared.networks.registry import registry

log = logging.getLogger(__name__)

CLICKS_RAW = "clicks.raw"
EVENTS_RAW = "events.raw"
EVENTS_ATTRIBUTED = "events.attributed"
SKAN_RAW = "skan.raw"
SKAN_DECODED = "skan.decoded"
AUDIT_RECORDS = "audit.records"

# Topics a consumer reads; each gets a `.dlq` for records it cannot process.
CONSUMED = (CLICKS_RAW, EVENTS_RAW, EVENTS_ATTRIBUTED, SKAN_RAW, SKAN_DECODED, AUDIT_RECORDS)


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def forward_topic(network: str) -> str:
    return f"forward.{network}"


def all_topics() -> list[str]:
    names = [*CONSUMED, *(dlq(t) for t in CONSUMED)]
    for network in registry().names:  # each registered network has forward.<name>, its .retry and .dlq
        main = forward_topic(network)
        names += [main, f"{main}.retry", dlq(main)]
    return names


# Kafka's own default too: records (erased devices' included) are gone from a topic a week after they came.
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


def create_topics(bootstrap: str, partitions: int, replication: int, timeout: float = 30.0,
                  retention_ms: int = DEFAULT_RETENTION_MS) -> list[str]:
    """Creates the missing topics with `retention.ms`; returns the names created. Existing topics are left
    alone, their retention included (change it with kafka-configs.sh --alter)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in all_topics() if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=replication,
                  config={"retention.ms": str(retention_ms)}) for t in missing],
        operation_timeout=timeout,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(topic)
        except Exception as exc:
            # Another process may have created it between our list and create.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    log.info("topics created", extra={"topics": created})
    return created
