"""`python -m tests.fakes.serve`: every network's fake in one process, for `apprefer dev --fake-networks`.

One fake per registered network that has one in tests/fakes (`FAKE.for_dev`), on consecutive ports. Prints
one JSON line, {network: {"base_url", "token_url"}} (what APPREFER_<NAME>_BASE_URL and _TOKEN_URL take),
then serves until SIGTERM or SIGINT. Meta and TikTok accept any access token here; Google Ads takes the
credentials shown in the README (client id `google-client-id`, ...). What each received is on
`GET <url>/_fake/requests`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from aiohttp import web

from shared.networks.registry import registry
from tests.fakes import FakeServer, fake_class


def _with_inspection(fake: FakeServer) -> None:
    """Adds GET /_fake/requests: what the fake received (method, path, status, arrival), newest last."""
    add_routes = fake.add_routes

    def add(app: web.Application) -> None:
        add_routes(app)

        async def requests(_request: web.Request) -> web.Response:
            seen: list[dict[str, Any]] = [{"method": r.method, "path": r.path, "status": r.status, "at": r.at}
                                          for r in fake.requests if not r.path.startswith("/_fake/")]
            return web.json_response({"requests": seen[-200:]})

        app.router.add_get("/_fake/requests", requests)

    fake.add_routes = add  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.serve")
    parser.add_argument("--port", type=int, default=0,
                        help="the first of one port per registered network (0: any free)")
    args = parser.parse_args()
    fakes: dict[str, FakeServer] = {}
    for index, network in enumerate(registry().names):
        fake = fake_class(network)
        if fake is not None:
            fakes[network] = fake.for_dev(port=args.port + index if args.port else 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for fake in fakes.values():
        _with_inspection(fake)
        fake.start()
    print(json.dumps({network: {"base_url": fake.base_url, "token_url": f"{fake.base_url}/token"}
                      for network, fake in fakes.items()}), flush=True)
    try:
        stop.wait()
    finally:
        for fake in fakes.values():
            fake.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
