"""SKAN end to end: gateway -> skan decoder -> fanout -> skan_postback forwarder -> a fake ad network.

Real broker, real PostgreSQL; the guide's simulated test apps (888707085/6/7) with the revenue,
conversion and engagement schemas and signature_policy skip; Apple's signed examples with enforce.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shared.kafka.topics import create_topics
from tests.fakes import FakeAdNetwork
from tests.support.pipeline import AdminApi, ServiceProcess, http_call, service_env, start_edge, wait_until

pytestmark = pytest.mark.slow

TESTDATA = Path(__file__).resolve().parents[1] / "data" / "skan"
AD_NETWORK = "example123.skadnetwork"
SCHEMAS = {
    "888707085": {"mode": "revenue", "event_name": "af_skad_revenue", "currency": "USD", "unit": 1.0},
    "888707086": {"mode": "conversion", "events": ["af_level_complete", "af_login", "af_skad_revenue", "af_register",
                                                   "af_subscription", "af_custom_event"]},
    "888707087": {"mode": "engagement", "event_name": "af_skad_revenue"},
}


class Skan:
    def __init__(self, base: str, admin: AdminApi, network: FakeAdNetwork) -> None:
        # `base` is the gateway's (postbacks arrive there); `admin` the admin service's API.
        self.base, self.admin, self.network = base, admin, network

    def app(self, apple_app_id: str, schema: dict[str, Any], policy: str) -> str:
        app_id = str(self.admin.new_app(platform="ios", apple_app_id=apple_app_id)["app_id"])
        self.admin.call("PUT", f"/apps/{app_id}/skan/schema", {"schema_id": f"s-{apple_app_id}",
                        "valid_from": "2020-01-01T00:00:00Z", "signature_policy": policy, **schema})
        return self.attach_ad_network(app_id)

    def built_in_test_app(self, apple_app_id: str) -> str:
        """One of the guide's simulated apps, as `apprefer db upgrade` seeds them: only the ad network's
        integration is attached, as an ad network testing against a fresh install would."""
        (app,) = [a for a in self.admin.call("GET", "/apps")["apps"] if a["apple_app_id"] == apple_app_id]
        assert app["test_app"] is True and app["platform"] == "ios"
        return self.attach_ad_network(str(app["app_id"]))

    def attach_ad_network(self, app_id: str) -> str:
        urls = {"install_url": f"{self.network.base_url}/install?tid={{transaction_id}}&pid={{postback_id}}"
                               f"&src={{attribution_source}}&camp={{campaign_id}}",
                "event_url": f"{self.network.base_url}/event?pid={{postback_id}}&event={{event_name}}"
                             f"&rev={{event_revenue}}&cur={{event_revenue_currency}}&tid={{transaction_id}}"}
        self.admin.call("PUT", f"/apps/{app_id}/integrations/skan_postback", {"settings": {"ad_networks": [
            {"ad_network_id": AD_NETWORK, **urls}]}})
        return app_id

    def post(self, postback: dict[str, Any], path: str = "/v1/skan/postbacks", query: str = "") -> int:
        status, _, _ = http_call("POST", f"{self.base}{path}{query}", postback, {"Content-Type": "application/json"})
        return status

    def shown(self, transaction_id: str) -> dict[str, Any]:
        return dict(self.admin.call("GET", f"/skan/postbacks/{transaction_id}"))

    def stored(self, transaction_id: str) -> None:
        wait_until(lambda: http_call("GET", f"{self.admin.base}/admin/v1/skan/postbacks/{transaction_id}",
                                     headers=self.admin.headers)[0] == 200, timeout=30, what=transaction_id)


@pytest.fixture
def skan(fresh_bootstrap: str, migrated_pg_url: str, tmp_path: Path) -> Iterator[Skan]:
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    with FakeAdNetwork() as network:
        env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_RETRY_DELAYS="1,2")
        edge = start_edge(env, tmp_path)
        consumers = [ServiceProcess(args, env, tmp_path).start() for args in (
            ["run", "skan"], ["run", "fanout"], ["run", "audit"], ["run", "forwarder", "--network", "skan_postback"])]
        try:
            yield Skan(edge.base, edge.admin, network)
        finally:
            for process in consumers:
                process.terminate()
            edge.terminate()


def simulated(apple_app_id: str, value: int) -> dict[str, Any]:
    return {"version": "3.0", "ad-network-id": AD_NETWORK, "campaign-id": 12, "app-id": int(apple_app_id),
            "transaction-id": str(uuid.uuid4()), "redownload": False, "source-app-id": 1234567891,
            "fidelity-type": 1, "did-win": True, "conversion-value": value,
            "attribution-signature": "MEUCIQDsimulatedtestappsignature==", "ad-network-campaign-id": "222222",
            "timestamp": "1596525944"}


def test_the_guides_simulated_test_apps_reach_the_ad_network(skan: Skan) -> None:
    expected = {"888707085": (7, 1), "888707086": (63, 6), "888707087": (3, 3)}
    sent: dict[str, dict[str, Any]] = {}
    for apple_app_id, (value, _events) in expected.items():
        skan.built_in_test_app(apple_app_id)  # seeded by the migrations: no app or schema set up by hand
        sent[apple_app_id] = simulated(apple_app_id, value)
        assert skan.post(sent[apple_app_id]) == 200

    total = sum(1 + events for _value, events in expected.values())
    skan.network.wait_for(lambda: len(skan.network.postbacks) >= total, timeout=60)
    for apple_app_id, (_value, events) in expected.items():
        tid = sent[apple_app_id]["transaction-id"]
        received = [p for p in skan.network.postbacks if p["tid"] == tid]
        installs = [p for p in received if p["kind"] == "install"]
        in_app = [p for p in received if p["kind"] == "event"]
        assert len(installs) == 1 and len(in_app) == events, (apple_app_id, received)
        assert installs[0]["src"] == "SKAdNetwork" and installs[0]["camp"] == "222222"
        shown = skan.shown(tid)
        assert shown["signature"] == "skipped" and shown["counted_as_install"] is True
        assert shown["records"][0]["kind"] == "install" and shown["records"][0]["attribution_source"] == "skadnetwork"
    revenue_tid = sent["888707085"]["transaction-id"]
    revenue = [p for p in skan.network.postbacks if p["tid"] == revenue_tid and p["kind"] == "event"]
    assert (revenue[0]["event"], float(revenue[0]["rev"]), revenue[0]["cur"]) == ("af_skad_revenue", 7.0, "USD")
    conversion = {p["event"] for p in skan.network.postbacks
                  if p["tid"] == sent["888707086"]["transaction-id"] and p["kind"] == "event"}
    assert conversion == set(SCHEMAS["888707086"]["events"])
    assert len(skan.network.postbacks) == total  # nothing twice


def test_duplicates_are_answered_200_stored_once_and_sent_once(skan: Skan) -> None:
    skan.built_in_test_app("888707085")
    postback = simulated("888707085", 5)
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: skan.post(postback), range(6)))
    assert statuses == [200] * 6
    tid = postback["transaction-id"]
    wait_until(lambda: skan.network.postbacks and skan.shown(tid)["duplicates"] == 5, timeout=60,
               what="duplicates counted")
    skan.network.wait_for(lambda: len(skan.network.postbacks) >= 2, timeout=30)
    assert len(skan.network.postbacks) == 2
    # Apple's own copy with a different (unsigned) value wins, and says so.
    apple_copy = {**copy.deepcopy(postback), "conversion-value": 9}
    assert skan.post(apple_copy, path="/.well-known/skadnetwork/report-attribution/") == 200
    wait_until(lambda: skan.shown(tid)["value_source"] == "apple", timeout=30, what="apple copy merged")
    shown = skan.shown(tid)
    assert shown["conversion_value"] == 9 and set(shown["sources"]) == {"network", "apple"}


def test_signatures_are_enforced_with_apples_keys(skan: Skan) -> None:
    assert TESTDATA.is_dir(), f"the SKAN test data is part of the repository: {TESTDATA} (tests/data/README.md)"
    signed = json.loads((TESTDATA / "apple_v3.0_winning.json").read_text())["postback"]
    skan.app(str(signed["app-id"]), SCHEMAS["888707085"], policy="enforce")
    assert skan.post(signed, query="?ad-network-campaign-id=777&conversion-value=1") == 200
    tampered = {**signed, "transaction-id": str(uuid.uuid4())}
    assert skan.post(tampered) == 200
    skan.stored(signed["transaction-id"])
    skan.stored(tampered["transaction-id"])
    good, bad = skan.shown(signed["transaction-id"]), skan.shown(tampered["transaction-id"])
    assert good["signature"] == "valid" and good["counted_as_install"] is True
    assert good["enrichment"]["ad-network-campaign-id"] == "777"
    assert good["conversion_value"] == 20  # a query parameter never overwrites the body's value
    assert bad["signature"] == "invalid" and bad["reason"] and bad["counted_as_install"] is False and not bad["records"]
    skan.network.wait_for(lambda: any(p["tid"] == signed["transaction-id"] for p in skan.network.postbacks))
    assert not [p for p in skan.network.postbacks if p["tid"] == tampered["transaction-id"]]


def test_malformed_postbacks_are_400(skan: Skan) -> None:
    status, _, answer = http_call("POST", f"{skan.base}/v1/skan/postbacks", None, raw=b'{"version": "4.0" "app-id": 1}')
    assert status == 400 and answer["field"] == "body"
    assert http_call("POST", f"{skan.base}/v1/skan/postbacks", None, raw=b"")[0] == 400
    missing = simulated("888707085", 1)
    del missing["transaction-id"]
    status, _, answer = http_call("POST", f"{skan.base}/v1/skan/postbacks", missing)
    assert status == 400 and answer["field"] == "transaction-id"
