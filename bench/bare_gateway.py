"""The reference for the gateway benchmark: a bare aiohttp app with the gateway's route, parsing the
JSON body and answering 202, with nothing else (no auth, validation, hashing, Avro or broker).

`python -m bench.bare_gateway --port PORT`
"""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web


async def post_events(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    accepted = len(body["events"]) if isinstance(body, dict) and "events" in body else 1
    return web.Response(body=orjson.dumps({"accepted": accepted}), status=202, content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/v1/events", post_events)
    # As the gateway runs: one process, no access log.
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
