"""Reading a topic to its end in tests, without joining a consumer group."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every record on the topic now (read to EOF on each partition, no group join)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.partition.eof": True,
        "fetch.wait.max.ms": 10,  # the broker would otherwise hold the fetch that reports EOF for 500 ms
    })
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        at_end: set[int] = set()
        messages: list[Message] = []
        deadline = time.monotonic() + 15
        while at_end != set(partitions):
            assert time.monotonic() < deadline, f"{topic}: EOF not reached on every partition"
            for message in consumer.consume(500, 0.2):
                error = message.error()
                if error is None:
                    messages.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                else:
                    raise AssertionError(f"reading {topic}: {error}")
        return messages
    finally:
        consumer.close()
