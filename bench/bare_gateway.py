"""The references for the gateway benchmark, both with the gateway's route.

- bare: an aiohttp app parsing the JSON body and answering 202, with nothing else (no auth,
  validation, hashing, Avro or broker);
- naive (`--produce BOOTSTRAP`): the same, but the body is produced to the broker as it is and the
  answer waits for its acknowledgement the straightforward way: confluent-kafka's sync Producer
  with a poll thread, and one future per record, each settled with its own `call_soon_threadsafe`.
  It is the baseline issue 7 asks the real gateway to beat while doing all the rest.

`python -m bench.bare_gateway --port PORT [--produce BOOTSTRAP --topic TOPIC]`
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from confluent_kafka import KafkaError, KafkaException, Message, Producer


def accepted_body(body: object) -> bytes:
    accepted = len(body["events"]) if isinstance(body, dict) and "events" in body else 1
    return orjson.dumps({"accepted": accepted})


async def post_events(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    return web.Response(body=accepted_body(body), status=202, content_type="application/json")


class NaiveProducer:
    def __init__(self, bootstrap: str) -> None:
        # The gateway's durability settings, so the comparison is about the code, not the guarantees.
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "linger.ms": 2, "compression.type": "lz4"})
        threading.Thread(target=self._poll_forever, daemon=True).start()

    def _poll_forever(self) -> None:
        while True:
            self._producer.poll(0.05)

    async def send(self, topic: str, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if done.done():
                return
            if err is not None:
                done.set_exception(KafkaException(err))
            else:
                done.set_result(None)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err)

        self._producer.produce(topic, value, on_delivery=on_delivery)
        await done


def naive_handler(producer: NaiveProducer, topic: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def post_events_durably(request: web.Request) -> web.Response:
        raw = await request.read()
        body = orjson.loads(raw)
        await producer.send(topic, raw)
        return web.Response(body=accepted_body(body), status=202, content_type="application/json")
    return post_events_durably


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--produce", metavar="BOOTSTRAP", help="the naive durable variant, producing to this broker")
    parser.add_argument("--topic", default="events.raw")
    args = parser.parse_args()
    app = web.Application(client_max_size=1_048_576)
    if args.produce:
        app.router.add_post("/v1/events", naive_handler(NaiveProducer(args.produce), args.topic))
    else:
        app.router.add_post("/v1/events", post_events)
    # As the gateway runs: one process, no access log.
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
