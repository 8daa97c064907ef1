"""`python -m tests.fakes.serve`: every network's fake in one process, for `apprefer dev --fake-networks`.

Prints one JSON line with each fake's base URL (what the forwarders' APPREFER_*_BASE_URL variables take),
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

from tests.fakes import FakeAdNetwork, FakeGoogleAds, FakeMeta, FakeServer, FakeTikTok


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
    parser.add_argument("--port", type=int, default=0, help="the first of four consecutive ports (0: any free)")
    args = parser.parse_args()
    ports = [args.port + i if args.port else 0 for i in range(4)]
    fakes = {"meta": FakeMeta(tokens=None, port=ports[0]), "google_ads": FakeGoogleAds(port=ports[1]),
             "tiktok": FakeTikTok(tokens=None, port=ports[2]), "skan_ad_network": FakeAdNetwork(port=ports[3])}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for fake in fakes.values():
        _with_inspection(fake)
        fake.start()
    google = fakes["google_ads"]
    assert isinstance(google, FakeGoogleAds)
    urls = {name: fake.base_url for name, fake in fakes.items()}
    urls["google_oauth_token"] = google.token_url
    print(json.dumps(urls), flush=True)
    try:
        stop.wait()
    finally:
        for fake in fakes.values():
            fake.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
