"""The largest event the gateway accepts passes every stage or lands in a dead-letter topic, and
costs only itself: no consumer restarts, the ordinary events after it are delivered, none twice.

With the default margin (APPREFER_GATEWAY_RECORD_MARGIN_BYTES) every stage has room for what it
adds. With no margin, the attributed event outgrows the broker's record limit, and the attribution
consumer dead-letters the raw event instead of crash-looping (the fault this test was written for).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest

from shared.avro import codec
from shared.kafka.topics import EVENTS_ATTRIBUTED, EVENTS_RAW
from tests.e2e.conftest import Pipeline
from tests.support.pipeline import http_call
from tests.support.pipeline import wait_until as wait
from tests.support.topic_reading import read_all

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.forwarders("meta")]

ORDINARY = 20


def event(name: str, device: str, blob_chars: int = 0, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": f"{name}-{device}", "event_name": name, "event_time": int(time.time()) - 5,
                            "device": {"device_id": device, "os": "android"}, **fields}
    if blob_chars:
        body["properties"] = {"blob": "p" * blob_chars}
    return body


def post(pipeline: Pipeline, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, _, answer = http_call("POST", f"{pipeline.base}/v1/events", body, {"Authorization": f"Bearer {key}"},
                                  timeout=30)
    return status, answer


def largest_blob(pipeline: Pipeline, key: str, make: Any) -> int:
    """The blob length whose record is exactly the gateway's limit, from the 413's own figures."""
    probe = 1_000_000
    status, answer = post(pipeline, key, make(probe))
    assert status == 413, answer
    size, limit = (int(n.replace(",", "")) for n in re.findall(r"[\d,]{5,}", answer["message"])[:2])
    return probe - (size - limit)


@pytest.mark.parametrize("pipeline", [{}, {"APPREFER_GATEWAY_RECORD_MARGIN_BYTES": "0"}], indirect=True,
                         ids=["default-margin", "no-margin"])
def test_a_maximal_event_passes_or_is_dead_lettered_and_costs_only_itself(pipeline: Pipeline) -> None:
    no_margin = pipeline.env.get("APPREFER_GATEWAY_RECORD_MARGIN_BYTES") == "0"
    live = pipeline.configured_app()["live_key"]
    install = lambda n: event("install", "big", n, referrer={"fbclid": "IwAR" + "f" * 496})  # noqa: E731
    purchase = lambda n: event("purchase", "big", n, revenue={"amount": 5, "currency": "USD"})  # noqa: E731
    install_chars, purchase_chars = largest_blob(pipeline, live, install), largest_blob(pipeline, live, purchase)
    if no_margin:
        # The record limit itself: the producer counts a few bytes of framing on top, so stay just under.
        install_chars, purchase_chars = install_chars - 512, purchase_chars - 512
    else:
        assert post(pipeline, live, install(install_chars + 1))[0] == 413  # the limit is exact
    assert post(pipeline, live, install(install_chars)) == (202, {"accepted": 1})
    assert post(pipeline, live, purchase(purchase_chars)) == (202, {"accepted": 1})
    for i in range(ORDINARY):
        assert post(pipeline, live, event("install", f"o{i}", referrer={"fbclid": f"IwAR-o{i}"}))[0] == 202
    for i in range(ORDINARY):
        assert post(pipeline, live, event("purchase", f"o{i}", revenue={"amount": 9.99, "currency": "USD"}))[0] == 202

    delivered = lambda: {e.get("event_id") for e in pipeline.meta.events}  # noqa: E731
    wait(lambda: {f"purchase-o{i}" for i in range(ORDINARY)} <= delivered(), timeout=90,
         what="every ordinary purchase at Meta")

    def dead_lettered(event_id: str) -> bool:
        return any(r["status"] in ("rejected", "dead_lettered") for r in pipeline.audit(event_id)) or any(
            event_id.encode() in m.value() for t in (f"{EVENTS_RAW}.dlq", f"{EVENTS_ATTRIBUTED}.dlq")
            for m in read_all(pipeline.bootstrap, t))

    wait(lambda: "purchase-big" in delivered() or dead_lettered("purchase-big"), timeout=90,
         what="the maximal purchase delivered or dead-lettered")
    if no_margin:  # the attribution consumer could not produce it: the raw event went to its DLQ
        letters = [m for m in read_all(pipeline.bootstrap, f"{EVENTS_RAW}.dlq") if b"install-big" in m.value()]
        assert len(letters) == 1
        headers = dict(letters[0].headers() or [])
        assert headers["dlq.output_topic"] == EVENTS_ATTRIBUTED.encode()
        assert b"too large" in headers["dlq.error"].lower()
    for process in pipeline.processes:
        process.assert_alive()  # nobody crashed (nothing here would restart them)

    # Each event once on events.attributed: no batch was produced again.
    ids = Counter(codec().decode(m.value())[1]["event"]["event_id"]
                  for m in read_all(pipeline.bootstrap, EVENTS_ATTRIBUTED))
    assert all(ids[f"{name}-o{i}"] == 1 for i in range(ORDINARY) for name in ("install", "purchase")), ids
    assert sum(e.get("event_id") == "purchase-o0" for e in pipeline.meta.events) == 1
