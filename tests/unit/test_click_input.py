"""services.gateway.click_input: query parameters / S2S JSON into clicks.raw records."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from services.gateway.click_input import click_record
from shared.avro import codec
from shared.errors import InputError

CLICKED_AT = 1_700_000_000_000


def click(params: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"app_id": "app_1", "link_id": "lnk_1", "link_network": None, "link_campaign": None,
                               "ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (iPhone)", "clicked_at_ms": CLICKED_AT}
    options.update(overrides)
    return click_record(params, **options)


@pytest.mark.parametrize(("param", "network"), [
    ("fbclid", "meta"), ("gclid", "google_ads"), ("gbraid", "google_ads"), ("wbraid", "google_ads"),
    ("ttclid", "tiktok"),
])
def test_network_click_ids(param: str, network: str) -> None:
    rec = click({param: " Abc-123_XyZ "}, link_network="other")
    assert (rec["click_id_type"], rec["click_id"], rec["network"]) == (param, "Abc-123_XyZ", network)
    assert rec["properties"] == {}


@pytest.mark.parametrize(("params", "winner"), [
    # Networks in name order (google_ads, meta, tiktok), each network's click ids as it declares them.
    ({"ttclid": "t", "wbraid": "w", "gbraid": "b", "gclid": "g", "fbclid": "f"}, "gclid"),
    ({"ttclid": "t", "wbraid": "w", "fbclid": "f"}, "wbraid"),
    ({"ttclid": "t", "fbclid": "f"}, "fbclid"),
    ({"ttclid": "t", "gclid": "g"}, "gclid"),
    ({"ttclid": "t", "wbraid": "w", "gbraid": "b"}, "gbraid"),
    ({"ttclid": "t", "wbraid": "w"}, "wbraid"),
    ({"ttclid": "t", "fbclid": ""}, "ttclid"),
])
def test_click_id_priority(params: dict[str, str], winner: str) -> None:
    rec = click(params)
    assert rec["click_id_type"] == winner and rec["click_id"] == params[winner]
    assert not set(rec["properties"]) & {"fbclid", "gclid", "gbraid", "wbraid", "ttclid"}


def test_link_network_is_the_fallback() -> None:
    rec = click({}, link_network="meta", link_campaign="spring")
    assert (rec["network"], rec["campaign"], rec["click_id_type"], rec["click_id"]) == ("meta", "spring", None, None)
    assert click({})["network"] is None


def test_click_key() -> None:
    assert click({"click_id": " ck-1 ", "gclid": "g"})["click_key"] == "ck-1"
    keys = {click({"gclid": "g"})["click_key"] for _ in range(20)}
    assert len(keys) == 20 and all(re.fullmatch(r"[0-9a-f]{32}", key) for key in keys)
    assert "click_id" not in click({"click_id": "ck-1"})["properties"]


def test_campaign_params_and_properties() -> None:
    rec = click({"campaign_id": "c1", "adset_id": "as1", "ad_id": "ad1", "utm_source": "fb", "sub1": 7,
                 "fbclid": "f", "click_id": "k", "idfa": "x", "empty": "", "none": None})
    assert rec["campaign"] == "c1"
    assert rec["properties"] == {"campaign_id": "c1", "adset_id": "as1", "ad_id": "ad1", "utm_source": "fb",
                                 "sub1": "7"}
    assert click({"campaign_id": "c1"}, link_campaign="link")["campaign"] == "link"


def test_advertising_ids_normalised() -> None:
    rec = click({"idfa": "AEBE52E7-03EE-455A-B3C4-E57283966239", "gaid": "38400000-8CF0-11BD-B23E-10B96E40000D"})
    assert rec["idfa"] == "aebe52e7-03ee-455a-b3c4-e57283966239"
    assert rec["gaid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"
    rec = click({"idfa": "00000000-0000-0000-0000-000000000000", "gaid": "00000000000000000000000000000000"})
    assert rec["idfa"] is None and rec["gaid"] is None
    assert "idfa" not in rec["properties"] and "gaid" not in rec["properties"]


def test_fingerprint() -> None:
    expected = hashlib.sha256(b"203.0.113.7|mozilla/5.0 (iphone)").hexdigest()
    assert click({})["fingerprint"] == expected
    assert click({}, ip=None)["fingerprint"] is None
    assert click({}, ip="  ")["fingerprint"] is None
    assert click({}, user_agent=None)["fingerprint"] == hashlib.sha256(b"203.0.113.7|").hexdigest()


@pytest.mark.parametrize(("params", "field"), [
    ({"gclid": "g" * 501}, "gclid"),
    ({"utm_content": "x" * 501}, "utm_content"),
    ({"click_id": "k" * 501}, "click_id"),
    ({"fbclid": ["a", "b"]}, "fbclid"),
    ({"campaign_id": {"id": 1}}, "campaign_id"),
    ({"sandbox": True}, "sandbox"),
    ({"ok": "1", "idfa": b"raw"}, "idfa"),
])
def test_bad_values_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        click(params)
    assert info.value.field == field


def test_limits() -> None:
    assert click({"gclid": "g" * 500})["click_id"] == "g" * 500
    assert len(click({f"p{i}": "v" for i in range(50)})["properties"]) == 50
    with pytest.raises(InputError) as info:
        click({f"p{i}": "v" for i in range(51)})
    assert info.value.field == "properties"


@pytest.mark.parametrize("sandbox", [True, False])
def test_record_encodes_as_click(sandbox: bool) -> None:
    rec = click({"ttclid": "T", "click_id": "ck", "idfa": "AEBE52E7-03EE-455A-B3C4-E57283966239", "ad_id": "9",
                 "utm_source": "tt"}, link_campaign="spring", sandbox=sandbox)
    assert (rec["app_id"], rec["link_id"], rec["clicked_at_ms"], rec["sandbox"]) == (
        "app_1", "lnk_1", CLICKED_AT, sandbox)
    assert codec().decode(codec().encode("apprefer.Click", rec)) == ("apprefer.Click", rec)
    bare = click({}, link_id=None, ip=None, user_agent=None)
    assert codec().decode_as("apprefer.Click", codec().encode("apprefer.Click", bare)) == bare


# --- personal data (services/privacy/personal_data.py) -------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_parameters_named_like_personal_data_are_kept_hashed() -> None:
    rec = click({"email": " Jane@Example.com ", "Phone_Number": "+1 650 555 0100", "firstName": "Jane",
                 "utm_source": "x"})
    assert rec["properties"] == {"email": _sha("jane@example.com"), "Phone_Number": _sha("16505550100"),
                                 "firstName": _sha("jane"), "utm_source": "x"}


def test_personal_looking_values_and_names_are_dropped() -> None:
    rec = click({"utm_content": "to jane@example.com", "memo": "+44 20 7946 0958", "jane@example.com": "1",
                 "utm_source": "fb"}, link_campaign="call 650-555-0100", link_network="x@example.com")
    assert rec["properties"] == {"utm_source": "fb"}
    assert (rec["campaign"], rec["network"]) == (None, None)
    encoded = codec().encode("apprefer.Click", rec)
    assert b"jane" not in encoded and b"7946" not in encoded and b"555" not in encoded


@pytest.mark.parametrize("param", ["fbclid", "gclid", "ttclid", "click_id", "idfa", "gaid", "campaign_id", "ad_id"])
@pytest.mark.parametrize("value", ["jane@example.com", "+1 650 555 0100"])
def test_known_parameters_that_look_personal_are_refused_naming_them(param: str, value: str) -> None:
    with pytest.raises(InputError) as info:
        click({param: value})
    assert info.value.field == param and "looks like" in info.value.message


def test_drops_are_counted_per_entry() -> None:
    from prometheus_client import REGISTRY

    def count(entry: str) -> float:
        return REGISTRY.get_sample_value("apprefer_personal_data_dropped_total", {"entry": entry, "kind": "email"}) or 0

    before = count("clicks"), count("tracking_link")
    click({"memo": "jane@example.com"})
    click({"memo": "jane@example.com"}, entry="tracking_link")
    assert (count("clicks"), count("tracking_link")) == (before[0] + 1, before[1] + 1)
