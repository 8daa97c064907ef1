"""services.domain.skan.macros: decoded postbacks to ad networks, and the guide's simulated test apps end to end."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from services.domain.skan.decode import (
    SIMULATED_TEST_APP_SCHEMAS,
    DecodedRecord,
    decode,
    estimated_install_time,
    occurrences,
    parse_schema,
    schema_in_force,
)
from services.domain.skan.macros import ATTRIBUTION_SOURCE_MACRO, MACROS, postback_id, postback_values, render
from services.domain.skan.postback_input import parse_postback, transaction_key

RECEIVED_MS = 1_596_530_000_123  # 2020-08-04T08:33:20.123Z
TID = "68eb3d91-15f5-44ee-9267-25c7655c20b6"

# The guide's enriched SKAN 3 example (commas fixed), without its signature as simulated postbacks are sent.
SIMULATED: dict[str, Any] = {
    "app-id": 888707086,
    "ip": "",
    "ad-network-campaign-name": "skadnetwork_abc_campaign",
    "source-app-id": 888707074,
    "ad-network-id": "abcabcabc.skadnetwork",
    "transaction-id": TID,
    "redownload": False,
    "timestamp": "1596525944",
    "ad-network-campaign-id": "222222",
    "conversion-value": 63,
    "campaign-id": 99,
}
INSTALL_URL = (
    "https://net.example/skan/install?app={app_id}&id={postback_id}&src={attribution_source}&cmp={campaign_id}"
    "&skan_cmp={skan_campaign_id}&cv={conversion_value}&rd={redownload}&ts={install_timestamp}"
)
EVENT_URL = (
    "https://net.example/skan/event?app={app_id}&id={postback_id}&ev={event_name}&nev={network_event_id}"
    "&rev={event_revenue}&cur={event_revenue_currency}&min={min_event_counter}&max={max_event_counter}"
)


def record(**overrides: Any) -> DecodedRecord:
    fields: dict[str, Any] = {
        "kind": "event",
        "event_name": "purchase",
        "count": 1,
        "min_count": 1,
        "max_count": 2,
        "revenue": 6.5,
        "min_revenue": 6.0,
        "max_revenue": 7.0,
        "currency": "USD",
        "min_hours": 0.0,
        "max_hours": 24.0,
        "schema_id": "t1",
        "conversion_value": 7,
        "coarse_conversion_value": None,
        "postback_sequence_index": 0,
        "value_unknown": False,
    }
    fields.update(overrides)
    return DecodedRecord(**fields)


def values(postback: dict[str, Any], rec: DecodedRecord, **options: Any) -> dict[str, str]:
    return postback_values(
        postback, rec, app_id="id888707086", received_at_ms=RECEIVED_MS, postback_id="pid", **options
    )


# ---------------------------------------------------------------------------------------------- render


def test_render_url_encodes_values() -> None:
    rendered = render(
        "https://n.example/p?c={campaign_name}&n={event_name}&a={app_id}",
        {"campaign_name": "UA_US_23+ a/b&c=d?é", "event_name": "#1 100%", "app_id": "id1"},
    )
    assert rendered == "https://n.example/p?c=UA_US_23%2B%20a%2Fb%26c%3Dd%3F%C3%A9&n=%231%20100%25&a=id1"
    assert parse_qs(urlsplit(rendered).query)["c"] == ["UA_US_23+ a/b&c=d?é"]


def test_render_missing_documented_macros_are_empty_unknown_ones_untouched() -> None:
    rendered = render("a={app_id}&b={country}&c={not_a_macro}&d={event_revenue}&e={}", {"app_id": "x", "country": None})
    assert rendered == "a=x&b=&c={not_a_macro}&d=&e={}"


def test_render_extra_values_are_substituted_and_scalars_formatted() -> None:
    assert render("{custom}", {"custom": "v w"}) == "v%20w"
    assert (
        render(
            "{did_win}|{event_revenue}|{min_event_counter}",
            {"did_win": True, "event_revenue": 7.0, "min_event_counter": 3},
        )
        == "true|7|3"
    )
    assert render("{event_revenue}", {"event_revenue": 1e-7}) == "0.0000001"


def test_render_is_single_pass() -> None:
    # A value that looks like a macro is data, not a template.
    assert render("{campaign_name}", {"campaign_name": "{app_id}", "app_id": "x"}) == "%7Bapp_id%7D"


# ------------------------------------------------------------------------------------------ postback id


def test_postback_id_is_deterministic_and_unique() -> None:
    assert postback_id(TID, 0, 0) == "1c900892-bc49-58cd-b16f-d705c11e551a"  # pinned: networks de-duplicate on it
    assert postback_id(TID, 0, 0) == postback_id(TID, 0, 0)
    ids = {postback_id(t, s, r) for t in (TID, "other", "1") for s in (0, 1, 2) for r in range(10)}
    assert len(ids) == 3 * 3 * 10
    assert uuid.UUID(postback_id(TID, 1, 2)).version == 5
    assert postback_id("a1", 1, 0) != postback_id("a", 11, 0)


# ---------------------------------------------------------------------------------------- macro values


def test_postback_values_cover_every_macro() -> None:
    got = values(SIMULATED, record())
    assert list(got) == list(MACROS)
    assert all(isinstance(v, str) for v in got.values())


def test_event_values() -> None:
    postback = {
        **SIMULATED,
        "ad-network-adset-id": "as 1",
        "ad-network-adset-name": "adset",
        "ad-network-ad-id": "ad1",
        "ad-network-ad-name": "ad",
        "ad-network-country-code": "za",
        "fidelity-type": 1,
        "did-win": True,
    }
    got = values(postback, record(), network_event_ids={"purchase": "PURCHASE_EV"})
    assert got["app_id"] == "id888707086"
    assert got["transaction_id"] == TID
    assert got["postback_id"] == "pid"
    assert got["attribution_source"] == ATTRIBUTION_SOURCE_MACRO == "SKAdNetwork"
    assert (got["event_name"], got["network_event_id"]) == ("purchase", "PURCHASE_EV")
    assert (got["event_revenue"], got["event_revenue_currency"]) == ("6.5", "USD")
    assert (got["min_event_revenue"], got["max_event_revenue"]) == ("6", "7")
    assert (got["min_event_counter"], got["max_event_counter"]) == ("1", "2")
    assert (got["min_time_post_install"], got["max_time_post_install"]) == ("0", "24")
    assert (got["campaign_id"], got["campaign_name"], got["skan_campaign_id"]) == (
        "222222",
        "skadnetwork_abc_campaign",
        "99",
    )
    assert (got["adset_id"], got["adset_name"], got["ad_id"], got["ad_name"]) == ("as 1", "adset", "ad1", "ad")
    assert (got["country"], got["source_app_id"], got["source_domain"]) == ("ZA", "888707074", "")
    assert (got["redownload"], got["fidelity_type"], got["did_win"]) == ("false", "1", "true")
    assert (got["postback_sequence_index"], got["conversion_value"], got["coarse_conversion_value"]) == ("0", "7", "")
    assert got["postback_timestamp"] == "1596525944"
    assert got["received_timestamp"] == "1596530000"
    # The network's timestamp - 48 h - 12 h.
    assert got["install_timestamp"] == str(1596525944 - 60 * 3600)


def test_install_values_have_no_event_fields() -> None:
    install = record(
        kind="install",
        event_name=None,
        count=1,
        min_count=None,
        max_count=None,
        revenue=None,
        min_revenue=None,
        max_revenue=None,
        currency=None,
        min_hours=None,
        max_hours=None,
    )
    got = values(SIMULATED, install, network_event_ids={"purchase": "x"})
    for name in (
        "event_name",
        "network_event_id",
        "event_revenue",
        "event_revenue_currency",
        "min_event_counter",
        "max_event_counter",
        "min_event_revenue",
        "max_event_revenue",
        "min_time_post_install",
        "max_time_post_install",
    ):
        assert got[name] == "", name
    # An event record with event fields would still not leak them into an install postback.
    assert values(SIMULATED, record(kind="install"))["event_revenue"] == ""


def test_skan4_values() -> None:
    postback = {
        "version": "4.0",
        "source-identifer": "0039",
        "source-domain": "example.com",
        "transaction-id": "t4",
        "postback-sequence-index": 2,
        "coarse-conversion-value": "high",
        "did-win": True,
        "redownload": True,
    }
    rec = record(conversion_value=None, coarse_conversion_value="high", postback_sequence_index=2)
    got = values(postback, rec, install_time=datetime(2020, 8, 1, tzinfo=UTC))
    assert got["source_identifier"] == "0039"  # the alias, leading zeros kept
    assert (got["skan_campaign_id"], got["campaign_id"], got["source_domain"]) == ("", "", "example.com")
    assert (got["postback_sequence_index"], got["coarse_conversion_value"], got["conversion_value"]) == (
        "2",
        "high",
        "",
    )
    assert (got["redownload"], got["did_win"]) == ("true", "true")
    assert got["install_timestamp"] == "1596240000"
    assert got["postback_timestamp"] == ""  # no timestamp from the network


def test_transaction_id_can_be_withheld() -> None:
    assert values(SIMULATED, record(), include_transaction_id=False)["transaction_id"] == ""


def test_non_scalar_enrichment_never_reaches_a_url() -> None:
    got = values({**SIMULATED, "ad-network-campaign-name": {"nested": 1}}, record())
    assert got["campaign_name"] == ""


# ---------------------------------------------------------------------------------- simulated test apps


def decoded_postbacks(app_id: int, value: int) -> list[str]:
    """What a network gets for one simulated postback: parse (200), decode with the app's schema, render."""
    postback = parse_postback(orjson.dumps({**SIMULATED, "app-id": app_id, "conversion-value": value}), {})
    received = datetime.fromtimestamp(RECEIVED_MS / 1000, tz=UTC)
    install_time = estimated_install_time(postback, received)
    schema = schema_in_force([SIMULATED_TEST_APP_SCHEMAS[str(app_id)]], install_time)
    tid, window = transaction_key(postback)
    urls = []
    for index, rec in enumerate(occurrences(decode(postback, schema))):
        macro_values = postback_values(
            postback,
            rec,
            app_id=f"id{app_id}",
            received_at_ms=RECEIVED_MS,
            postback_id=postback_id(tid, window, index),
            install_time=install_time,
            network_event_ids={"af_skad_revenue": "rev", "af_login": "login"},
        )
        urls.append(render(INSTALL_URL if rec.kind != "event" else EVENT_URL, macro_values))
    return urls


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def test_test_app_888707085_revenue_7_is_install_and_one_7_dollar_event() -> None:
    urls = decoded_postbacks(888707085, 7)
    assert len(urls) == 2
    install, event = map(query, urls)
    assert urls[0].startswith("https://net.example/skan/install?")
    assert (install["app"], install["src"], install["cv"], install["rd"]) == (
        "id888707085",
        "SKAdNetwork",
        "7",
        "false",
    )
    assert (install["cmp"], install["skan_cmp"]) == ("222222", "99")
    assert (event["ev"], event["nev"], event["rev"], event["cur"]) == ("af_skad_revenue", "rev", "7", "USD")
    assert (event["min"], event["max"]) == ("1", "1")


def test_test_app_888707086_conversion_63_is_install_and_six_events() -> None:
    urls = decoded_postbacks(888707086, 63)
    assert len(urls) == 7
    assert "/install?" in urls[0]
    assert [query(u)["ev"] for u in urls[1:]] == [
        "af_level_complete",
        "af_login",
        "af_skad_revenue",
        "af_register",
        "af_subscription",
        "af_custom_event",
    ]
    assert all(query(u)["rev"] == "" for u in urls[1:])  # bitmask events carry no revenue


def test_test_app_888707087_engagement_3_is_install_and_three_events() -> None:
    urls = decoded_postbacks(888707087, 3)
    assert len(urls) == 4
    assert "/install?" in urls[0]
    assert [query(u)["ev"] for u in urls[1:]] == ["af_skad_revenue"] * 3


@pytest.mark.parametrize(("app_id", "value"), [(888707085, 7), (888707086, 63), (888707087, 3)])
def test_test_app_postback_ids_are_unique_and_stable_across_retries(app_id: int, value: int) -> None:
    first, retry = decoded_postbacks(app_id, value), decoded_postbacks(app_id, value)
    assert first == retry
    ids = [query(u)["id"] for u in first]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)


def test_test_app_value_0_is_the_install_only_and_no_schema_no_events() -> None:
    assert len(decoded_postbacks(888707086, 0)) == 1
    later = parse_schema(
        {"schema_id": "x", "valid_from": "2030-01-01T00:00:00Z", "mode": "engagement", "event_name": "e"}
    )
    assert schema_in_force([later], datetime(2020, 8, 1, tzinfo=UTC)) is None
