"""The end-to-end load generator: a process of its own that posts SDK events to the gateway.

Each request carries two devices' events: an install whose Play referrer has an fbclid (so the device is
attributed to Meta) and then purchases, in the order the SDK sends them (one request: one broker
partition per device, install first). Every event id ends with the send time in epoch milliseconds, so
whoever finds the event's audit row can tell how long it took without asking this process.

Two ways to drive it:
- `rate`: open loop, events per second on a fixed schedule, whatever happens downstream;
- no rate: closed loop, at most `Counters.window` events sent and not yet audited (the bench's audit
  watcher publishes the audited count), which keeps the pipeline saturated without an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import aiohttp
import orjson

DEVICES_PER_REQUEST = 2
PURCHASES_PER_INSTALL = 4
EVENTS_PER_REQUEST = DEVICES_PER_REQUEST * (1 + PURCHASES_PER_INSTALL)
WORKERS = 32


@dataclass(frozen=True)
class LoadPlan:
    url: str  # the gateway's /v1/events
    key: str
    prefix: str  # starts every event id; names the phase
    seconds: float
    rate: float | None = None  # events/s, open loop; None: closed loop (at most `Counters.window` in flight)


@dataclass
class Counters:
    """Shared between the bench and the load process."""

    issued: Synchronized[int]  # events in requests sent (answered or not)
    accepted: Synchronized[int]  # events answered 202
    failed: Synchronized[int]  # events in requests answered otherwise, or not at all
    audited: Synchronized[int]  # written by the audit watcher: delivered rows of this prefix
    late_ms: Synchronized[int]  # open loop: how far the schedule slipped in total (all workers busy)
    started_ms: Synchronized[int]  # epoch ms of the first send
    ended_ms: Synchronized[int]  # epoch ms when the last worker stopped sending
    window: Synchronized[int]  # closed loop: events allowed in flight (the bench may change it meanwhile)

    @classmethod
    def create(cls, window: int = 0) -> Counters:
        ctx = multiprocessing.get_context("spawn")
        counters = cls(*(ctx.Value("q", 0) for _ in range(8)))
        counters.window.value = window
        return counters


def device_events(prefix: str, device: int, send_ms: int) -> list[dict[str, Any]]:
    device_id = f"{prefix}-d{device}"
    common = {"device_id": device_id, "os": "android", "os_version": "14", "model": "Pixel 8", "locale": "en_US",
              "ip": f"203.0.{device % 250}.{device % 199 + 1}", "gaid": f"00000000-bench-4000-8000-{device:012d}"}
    events = [{
        "event_id": f"{device_id}-0-{send_ms}", "event_name": "install", "event_time": send_ms,
        "device": common,
        "referrer": {"install_referrer": f"utm_source=facebook&fbclid=IwAR-bench-{prefix}-{device}"},
    }]
    for n in range(1, PURCHASES_PER_INSTALL + 1):
        events.append({
            "event_id": f"{device_id}-{n}-{send_ms}", "event_name": "purchase", "event_time": send_ms,
            "device": common, "user": {"email": f"buyer{device}@example.com", "external_id": f"user-{device}"},
            "revenue": {"amount": 4.99, "currency": "USD"}, "properties": {"sku": "coins_100"},
        })
    return events


def request_body(prefix: str, devices: list[int]) -> bytes:
    send_ms = int(time.time() * 1000)
    return orjson.dumps({"events": [e for d in devices for e in device_events(prefix, d, send_ms)]})


class Load:
    def __init__(self, plan: LoadPlan, counters: Counters) -> None:
        self.plan = plan
        self.counters = counters
        self.devices = itertools.count(1)
        self.deadline = 0.0
        self.next_slot = 0.0

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.plan.key}", "Content-Type": "application/json",
                   "User-Agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) bench"}
        connector = aiohttp.TCPConnector(limit=WORKERS)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            self.deadline = time.monotonic() + self.plan.seconds
            self.next_slot = time.monotonic()
            self.counters.started_ms.value = int(time.time() * 1000)
            await asyncio.gather(*(self.worker(session) for _ in range(WORKERS)))
            self.counters.ended_ms.value = int(time.time() * 1000)

    def in_flight(self) -> int:
        """Events sent, not refused, and not audited yet."""
        counters = self.counters
        return counters.issued.value - counters.failed.value - counters.audited.value

    async def wait_turn(self) -> bool:
        """False when the run is over."""
        if self.plan.rate is not None:
            slot = self.next_slot
            self.next_slot += EVENTS_PER_REQUEST / self.plan.rate
            now = time.monotonic()
            if slot > now:
                await asyncio.sleep(slot - now)
            else:
                with self.counters.late_ms.get_lock():
                    self.counters.late_ms.value += int((now - slot) * 1000)
        else:
            while self.in_flight() >= self.counters.window.value:
                if time.monotonic() >= self.deadline:
                    return False
                await asyncio.sleep(0.005)
        return time.monotonic() < self.deadline

    async def worker(self, session: aiohttp.ClientSession) -> None:
        while await self.wait_turn():
            body = request_body(self.plan.prefix, [next(self.devices) for _ in range(DEVICES_PER_REQUEST)])
            with self.counters.issued.get_lock():
                self.counters.issued.value += EVENTS_PER_REQUEST
            try:
                async with session.post(self.plan.url, data=body) as response:
                    await response.read()
                    ok = response.status == 202
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            counter = self.counters.accepted if ok else self.counters.failed
            with counter.get_lock():
                counter.value += EVENTS_PER_REQUEST


def run(plan: LoadPlan, counters: Counters) -> None:
    asyncio.run(Load(plan, counters).run())


def start(plan: LoadPlan, counters: Counters) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=run, args=(plan, counters), name="loadgen")
    process.start()
    return process
