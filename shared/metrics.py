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
PRODUCERS_REPLACED = Counter(
    "apprefer_producers_replaced_total", "Kafka producers replaced after becoming unusable", ["service"]
)
RECORDS_DROPPED = Counter(
    "apprefer_records_dropped_total",
    "Records the broker refused whose dead letter was refused too (logged, then dropped)", ["service", "topic"],
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
# At the gateway: accepted (known app) and unknown_app are answered 200, the others 413, 400 and 429.
SKAN_INTAKE_OUTCOMES = ("accepted", "too_large", "invalid", "unknown_app", "rate_limited")
SKAN_INTAKE = Counter(
    "apprefer_skan_intake_total", "SKAN postbacks at the gateway by outcome", ["outcome"]
)
for _outcome in SKAN_INTAKE_OUTCOMES:
    SKAN_INTAKE.labels(_outcome)  # every outcome shows, at 0, from the start
FORWARD_RATE = Gauge(
    "apprefer_forward_rate_limit_rps",
    "Requests per second a forwarder allows the integration it has slowed most (the ceiling when none)", ["network"],
)
FORWARD_IN_FLIGHT = Gauge(
    "apprefer_forward_late_requests", "Requests still unanswered after their batch went on (jobs parked)", ["network"]
)
FORWARD_BREAKERS_OPEN = Gauge(
    "apprefer_forward_breakers_open", "Integrations whose circuit breaker is open (no calls for a cool-down)",
    ["network"],
)
# At the gateway: values in free-form input that looked like an email address or a phone number, dropped
# (services/privacy/personal_data.py). Fields named like personal data are hashed instead, not counted here.
PERSONAL_DATA_ENTRIES = ("events", "clicks", "tracking_link", "revenuecat", "skan")
PERSONAL_DATA_KINDS = ("email", "phone")
PERSONAL_DATA_DROPPED = Counter(
    "apprefer_personal_data_dropped_total",
    "Values that looked like an email address or a phone number, dropped from free-form input at the gateway",
    ["entry", "kind"],
)
for _entry in PERSONAL_DATA_ENTRIES:
    for _kind in PERSONAL_DATA_KINDS:
        PERSONAL_DATA_DROPPED.labels(_entry, _kind)  # every series shows, at 0, from the start
