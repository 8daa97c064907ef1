"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_PROCESSED = Counter(
    "apprefer_records_processed_total", "Records a consumer processed", ["service", "topic"]
)
DEAD_LETTERS = Counter(
    "apprefer_dead_letters_total", "Records sent to a dead-letter topic", ["service", "topic"]
)
BATCH_SECONDS = Histogram(
    "apprefer_consumer_batch_seconds", "Time to process, flush and commit one batch", ["service"]
)
CONSUMER_LAG = Gauge(
    "apprefer_consumer_lag", "Records behind the high watermark", ["service", "topic", "partition"]
)
OLDEST_UNPROCESSED_AGE = Gauge(
    "apprefer_oldest_unprocessed_record_age_seconds",
    "Age of the oldest record in the batch being processed (0 when caught up)", ["service"],
)
HTTP_REQUESTS = Counter(
    "apprefer_http_requests_total", "Gateway requests by route and status", ["route", "status"]
)
EVENTS_ACCEPTED = Counter("apprefer_events_accepted_total", "Events acknowledged by the broker", ["kind"])
FORWARD_OUTCOMES = Counter(
    "apprefer_forward_outcomes_total", "Forwarding outcomes per network", ["network", "outcome"]
)
SKAN_POSTBACKS = Counter(
    "apprefer_skan_postbacks_total", "SKAN postbacks by sender and outcome", ["ad_network_id", "outcome"]
)
FORWARD_RATE = Gauge(
    "apprefer_forward_rate_limit_rps", "Requests per second a forwarder currently allows itself", ["network"]
)
