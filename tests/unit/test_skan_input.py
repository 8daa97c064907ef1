"""services.domain.skan.postback_input: the body and query of POST /v1/skan/postbacks into a postback (or a 400)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.domain.skan.postback_input import (
    APPLE_FIELDS,
    ENRICHMENT_KEYS,
    enrichment,
    flag,
    parse_postback,
    postback_timestamp_ms,
    sequence_index,
    source_identifier,
    transaction_key,
)
from services.skan.verify import REQUIRED_FIELDS_BY_VERSION
from shared.errors import InputError

DATA = Path(__file__).resolve().parents[1] / "data"  # copies from ../shared (tests/data/README.md)
GUIDE = DATA / "skan_guide.txt"
TESTDATA = DATA / "skan"

# The guide's three curl bodies as printed (missing commas, no closing brace): each must be a 400.
GUIDE_AS_PRINTED = [
    """{
      "app-id": 888707086,
      "ip": "",
      "ad-network-campaign-name": "skadnetwork_abc_campaign",
      "source-app-id": 888707074,
      "ad-network-id": "abcabcabc.skadnetwork",
      "transaction-id": "68eb3d91-15f5-44ee-9267-25c7655c20b6",
      "redownload": false,
      "attribution-signature": "MDYCGQCsQ4y8d4BlYU9b8Qb9BPWPi+ixk/OiRysCGQDZZ8fpJnuqs9my8iSQVbJO/oU1AXUROYU=",
      "timestamp": "1596525944",
      "ad-network-campaign-id": "222222",
      "conversion-value": 63,
      "campaign-id": 99""",
    """{
      "version": "4.0"
      "ad-network-id": "example123.skadnetwork",
      "ad-network-campaign-name": "skadnetwork_abc_campaign",
      "ad-network-campaign-id": "222222",
      "source-identifer": "5239",
      "app-id": 525463029,
      "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e30",
      "redownload": false,
      "source-app-id": 1234567891,
      "fidelity-type": 1,
      "did-win": true,
      "conversion-value": 63
      "postback-sequence-index": 0
      "attribution-signature": "MEUCIGRmSMrqedNu6uaHyhVcifs118R5z/AB6cvRaKrRRHWRAiEAv96ne3dKQ5kJpbsfk4eYiePmrZUU6sQmo+7zfP/1Bxo=\"""",  # noqa: E501 (the guide's line, as printed)
    """{
      "version": "4.0"
      "ad-network-id": "example123.skadnetwork",
      "ad-network-campaign-name": "skadnetwork_abc_campaign",
      "ad-network-campaign-id": "222222",
      "source-identifer": "39",
      "app-id": 525463029,
      "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e31",
      "redownload": false,
      "source-app-id": 1234567891,
      "fidelity-type": 1,
      "did-win": true,
      "coarse-conversion-value": "high"
      "postback-sequence-index": 0
      "attribution-signature": "MEUCIQD4rX6eh38qEhuUKHdap345UbmlzA7KEZ1bhWZuYM8MJwIgMnyiiZe6heabDkGwOaKBYrUXQhKtF3P/ERHqkR/XpuA=\"""",  # noqa: E501 (the guide's line, as printed)
]

# The same three with the commas and the closing brace fixed (and nothing else): each must be accepted.
GUIDE_FIXED = [
    b"""{
      "app-id": 888707086,
      "ip": "",
      "ad-network-campaign-name": "skadnetwork_abc_campaign",
      "source-app-id": 888707074,
      "ad-network-id": "abcabcabc.skadnetwork",
      "transaction-id": "68eb3d91-15f5-44ee-9267-25c7655c20b6",
      "redownload": false,
      "attribution-signature": "MDYCGQCsQ4y8d4BlYU9b8Qb9BPWPi+ixk/OiRysCGQDZZ8fpJnuqs9my8iSQVbJO/oU1AXUROYU=",
      "timestamp": "1596525944",
      "ad-network-campaign-id": "222222",
      "conversion-value": 63,
      "campaign-id": 99
}""",
    b"""{
      "version": "4.0",
      "ad-network-id": "example123.skadnetwork",
      "ad-network-campaign-name": "skadnetwork_abc_campaign",
      "ad-network-campaign-id": "222222",
      "source-identifer": "5239",
      "app-id": 525463029,
      "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e30",
      "redownload": false,
      "source-app-id": 1234567891,
      "fidelity-type": 1,
      "did-win": true,
      "conversion-value": 63,
      "postback-sequence-index": 0,
      "attribution-signature": "MEUCIGRmSMrqedNu6uaHyhVcifs118R5z/AB6cvRaKrRRHWRAiEAv96ne3dKQ5kJpbsfk4eYiePmrZUU6sQmo+7zfP/1Bxo="
}""",  # noqa: E501
    b"""{
      "version": "4.0",
      "ad-network-id": "example123.skadnetwork",
      "ad-network-campaign-name": "skadnetwork_abc_campaign",
      "ad-network-campaign-id": "222222",
      "source-identifer": "39",
      "app-id": 525463029,
      "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e31",
      "redownload": false,
      "source-app-id": 1234567891,
      "fidelity-type": 1,
      "did-win": true,
      "coarse-conversion-value": "high",
      "postback-sequence-index": 0,
      "attribution-signature": "MEUCIQD4rX6eh38qEhuUKHdap345UbmlzA7KEZ1bhWZuYM8MJwIgMnyiiZe6heabDkGwOaKBYrUXQhKtF3P/ERHqkR/XpuA="
}""",  # noqa: E501
]

# One complete postback per version (mandatory fields only, plus a value), to remove fields from.
_V2: dict[str, Any] = {
    "ad-network-id": "example123.skadnetwork",
    "campaign-id": 42,
    "app-id": 525463029,
    "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e28",
    "redownload": False,
    "conversion-value": 20,
}
COMPLETE: dict[str, dict[str, Any]] = {
    "1.0": {k: v for k, v in _V2.items() if k != "redownload"},
    "2.0": {"version": "2.0", **_V2},
    "2.1": {"version": "2.1", **_V2},
    "2.2": {"version": "2.2", **_V2, "fidelity-type": 1},
    "3.0": {"version": "3.0", **_V2, "fidelity-type": 1, "did-win": True},
    "4.0": {
        "version": "4.0",
        "ad-network-id": "example123.skadnetwork",
        "source-identifier": "5239",
        "app-id": 525463029,
        "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e30",
        "redownload": False,
        "fidelity-type": 1,
        "did-win": True,
        "postback-sequence-index": 0,
        "conversion-value": 63,
    },
}


def body(postback: dict[str, Any]) -> bytes:
    return orjson.dumps(postback)


def guide_examples() -> list[str]:
    """The --data-raw bodies of the guide's curl examples, exactly as the guide prints them."""
    text = GUIDE.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(r"--data-raw '(.*?)(?=\n[ \t]*\n|\Z)", text, re.DOTALL)]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ----------------------------------------------------------------------------------------- the guide


def test_guide_curl_examples_as_printed_are_rejected() -> None:
    examples = guide_examples()
    assert len(examples) == 3
    # The literal copies below are what the guide prints (so the other tests run without the shared folder).
    assert [_squash(e) for e in examples] == [_squash(e) for e in GUIDE_AS_PRINTED]
    for example in examples:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(example)
        with pytest.raises(InputError) as exc:
            parse_postback(example.encode(), {})
        assert exc.value.field == "body"
        assert "malformed JSON" in exc.value.message


@pytest.mark.parametrize("example", GUIDE_AS_PRINTED)
def test_literal_guide_examples_are_rejected(example: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_postback(example.encode(), {})
    assert exc.value.field == "body"


@pytest.mark.parametrize("index", range(3))
def test_guide_examples_with_commas_fixed_are_accepted(index: int) -> None:
    fixed = GUIDE_FIXED[index]
    # Only punctuation differs from the printed example: same keys, same values.
    assert _squash(fixed.decode()).replace(",", "") == (_squash(GUIDE_AS_PRINTED[index]) + "}").replace(",", "")
    postback = parse_postback(fixed, {})
    original = json.loads(fixed)
    assert {k: postback[k] for k in original} == original  # nothing the sender said was changed or dropped
    assert transaction_key(postback) == (json.loads(fixed)["transaction-id"], 0)
    assert postback["app-id"] in (888707086, 525463029)


def test_guide_skan4_examples_get_the_canonical_source_identifier() -> None:
    fine = parse_postback(GUIDE_FIXED[1], {})
    coarse = parse_postback(GUIDE_FIXED[2], {})
    assert fine["source-identifier"] == "5239"
    assert coarse["source-identifier"] == "39"  # a string: its length (2 digits) is kept
    assert fine["source-identifer"] == "5239"  # the alias key stays: the dict keeps what was sent
    assert source_identifier(coarse) == "39"


# ---------------------------------------------------------------------------------------- the body


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{", "malformed"),
        (b'{"app-id": 1,}', "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"null", "object"),
        (b"[]", "object"),
        (b'"postback"', "object"),
        (b"42", "object"),
    ],
)
def test_unusable_bodies_are_body_errors(raw: bytes, hint: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_postback(raw, {"ad-network-campaign-id": "1"})
    assert exc.value.field == "body"
    assert hint in exc.value.message
    assert isinstance(exc.value, ValueError)
    assert exc.value.as_json()["field"] == "body"


def test_unknown_keys_are_kept() -> None:
    postback = parse_postback(body({**COMPLETE["2.1"], "adjust-campaign": "a", "partner-x": {"y": 1}}), {})
    assert postback["adjust-campaign"] == "a"
    assert postback["partner-x"] == {"y": 1}


@pytest.mark.parametrize(
    ("version", "name"),
    # Without "version" a postback is a 1.0 one by definition (see the next test).
    [(version, name) for version, names in REQUIRED_FIELDS_BY_VERSION.items() for name in names if name != "version"],
)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_each_missing_mandatory_field_is_named(version: str, name: str, how: str) -> None:
    postback = dict(COMPLETE[version])
    parse_postback(body(postback), {})  # complete: accepted
    if how == "absent":
        postback.pop(name)
    else:
        postback[name] = None
    with pytest.raises(InputError) as exc:
        parse_postback(body(postback), {})
    assert exc.value.field == name
    assert "missing" in exc.value.message


@pytest.mark.parametrize("how", ["absent", "null"])
def test_a_postback_without_version_is_checked_as_1_0(how: str) -> None:
    for version in ("2.0", "3.0"):
        postback = {**COMPLETE[version], "version": None}
        if how == "absent":
            del postback["version"]
        assert parse_postback(body(postback), {})["did-win" if version == "3.0" else "redownload"] is not None
    skan4 = {**COMPLETE["4.0"], "version": None}
    with pytest.raises(InputError) as exc:
        parse_postback(body(skan4), {})
    assert exc.value.field == "campaign-id"  # 1.0 needs campaign-id, which a 4.0 postback no longer has


def test_mandatory_fields_cannot_come_from_the_query() -> None:
    postback = dict(COMPLETE["3.0"])
    del postback["campaign-id"]
    with pytest.raises(InputError) as exc:
        parse_postback(body(postback), {"campaign-id": "42"})
    assert exc.value.field == "campaign-id"


def test_the_first_missing_field_in_signing_order_is_named() -> None:
    postback = dict(COMPLETE["4.0"])
    del postback["did-win"], postback["fidelity-type"]
    with pytest.raises(InputError) as exc:
        parse_postback(body(postback), {})
    assert exc.value.field == "fidelity-type"


def test_signature_is_not_mandatory() -> None:
    # Simulated postbacks of test apps carry none: the signature is a per-app policy, not a 400.
    assert "attribution-signature" not in parse_postback(body(COMPLETE["3.0"]), {})


def test_unknown_version_is_accepted_for_the_verifier_to_reject() -> None:
    postback = {k: v for k, v in COMPLETE["3.0"].items() if k != "campaign-id"} | {"version": "9.9"}
    assert parse_postback(body(postback), {})["version"] == "9.9"


def test_adattributionkit_postback_needs_only_its_jws() -> None:
    assert parse_postback(b'{"jws-string": "a.b.c"}', {}) == {"jws-string": "a.b.c"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"transaction-id": 12345}, "transaction-id"),
        ({"transaction-id": "  "}, "transaction-id"),
        ({"postback-sequence-index": 3}, "postback-sequence-index"),
        ({"postback-sequence-index": -1}, "postback-sequence-index"),
        ({"postback-sequence-index": True}, "postback-sequence-index"),
        ({"postback-sequence-index": "x"}, "postback-sequence-index"),
        ({"conversion-value": 64}, "conversion-value"),
        ({"conversion-value": -1}, "conversion-value"),
        ({"conversion-value": "7"}, "conversion-value"),
        ({"conversion-value": 7.5}, "conversion-value"),
        ({"conversion-value": True}, "conversion-value"),
        ({"coarse-conversion-value": "huge"}, "coarse-conversion-value"),
        ({"coarse-conversion-value": 1}, "coarse-conversion-value"),
    ],
)
def test_values_the_key_and_decoder_need_are_checked(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_postback(body({**COMPLETE["4.0"], **change}), {})
    assert exc.value.field == field


@pytest.mark.parametrize("value", [None, 0, 63])
def test_conversion_value_null_zero_and_max_are_accepted_unchanged(value: int | None) -> None:
    postback = parse_postback(body({**COMPLETE["3.0"], "conversion-value": value}), {})
    assert postback["conversion-value"] == value  # null stays null, never 0
    assert "conversion-value" in postback


# ------------------------------------------------------------------------------------------ the alias


def test_alias_sets_the_canonical_field() -> None:
    postback = {k: v for k, v in COMPLETE["4.0"].items() if k != "source-identifier"}
    postback["source-identifer"] = "0042"
    parsed = parse_postback(body(postback), {})
    assert parsed["source-identifier"] == "0042"
    assert parsed["source-identifer"] == "0042"


def test_alias_fills_a_null_canonical_field() -> None:
    parsed = parse_postback(body({**COMPLETE["4.0"], "source-identifier": None, "source-identifer": "77"}), {})
    assert parsed["source-identifier"] == "77"


def test_canonical_field_wins_over_the_alias() -> None:
    parsed = parse_postback(body({**COMPLETE["4.0"], "source-identifer": "1111"}), {})
    assert parsed["source-identifier"] == "5239"
    assert parsed["source-identifer"] == "1111"  # the conflict stays visible


def test_neither_spelling_is_a_missing_source_identifier() -> None:
    postback = {k: v for k, v in COMPLETE["4.0"].items() if k != "source-identifier"}
    with pytest.raises(InputError) as exc:
        parse_postback(body(postback), {})
    assert exc.value.field == "source-identifier"


# ------------------------------------------------------------------------------------ redirect query


def test_query_parameters_are_merged_as_strings() -> None:
    query = {
        "ad-network-campaign-id": "222222",
        "ad-network-campaign-name": "summer sale",
        "ad-network-country-code": "ZA",
        "timestamp": "1596525944",
        "custom": "x",
    }
    parsed = parse_postback(body(COMPLETE["3.0"]), query)
    for name, value in query.items():
        assert parsed[name] == value


@pytest.mark.parametrize(
    "name",
    ["app-id", "campaign-id", "transaction-id", "did-win", "conversion-value", "ad-network-campaign-id", "ip"],
)
def test_query_never_overwrites_a_body_field(name: str) -> None:
    postback = {**COMPLETE["3.0"], "ad-network-campaign-id": "from-body", "ip": "203.0.113.1"}
    parsed = parse_postback(body(postback), {name: "from-query"})
    assert parsed[name] == postback[name]


def test_query_never_overwrites_a_null_body_field() -> None:
    postback = {**COMPLETE["3.0"], "conversion-value": None, "ad-network-campaign-name": None}
    parsed = parse_postback(body(postback), {"conversion-value": "63", "ad-network-campaign-name": "q"})
    assert parsed["conversion-value"] is None
    assert parsed["ad-network-campaign-name"] is None


@pytest.mark.parametrize(
    "name", ["conversion-value", "coarse-conversion-value", "source-app-id", "source-identifer", "fidelity-type"]
)
def test_query_never_adds_an_apple_field(name: str) -> None:
    postback = {k: v for k, v in COMPLETE["4.0"].items() if k != "conversion-value"}
    parsed = parse_postback(body(postback), {name: "63"})
    assert parsed == parse_postback(body(postback), {})
    assert "conversion-value" not in parsed  # a withheld value is never filled in from a URL


# --------------------------------------------------------------------------------- keys and helpers


def test_transaction_key_defaults_the_sequence_index_to_zero() -> None:
    assert transaction_key(COMPLETE["3.0"]) == ("6aafb7a5-0170-41b5-bbe4-fe71dedf1e28", 0)
    assert transaction_key({**COMPLETE["4.0"], "postback-sequence-index": 2})[1] == 2
    assert transaction_key({**COMPLETE["4.0"], "postback-sequence-index": "1"})[1] == 1
    assert sequence_index({"postback-sequence-index": None}) == 0


def test_enrichment_is_everything_but_apple_fields() -> None:
    parsed = parse_postback(GUIDE_FIXED[1], {"ad-network-adset-id": "as1", "adjust-campaign": "c"})
    assert enrichment(parsed) == {
        "ad-network-campaign-name": "skadnetwork_abc_campaign",
        "ad-network-campaign-id": "222222",
        "ad-network-adset-id": "as1",
        "adjust-campaign": "c",
    }
    assert not set(ENRICHMENT_KEYS) & APPLE_FIELDS


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("1596525944", 1_596_525_944_000),
        (1596525944, 1_596_525_944_000),
        ("1596525944123", 1_596_525_944_123),
        (" 1596525944 ", 1_596_525_944_000),
        ("159652594", None),
        ("1596525944.5", None),
        ("", None),
        (None, None),
        (True, None),
        ("٣٣٣٣٣٣٣٣٣٣", None),
    ],
)
def test_postback_timestamp(value: object, ms: int | None) -> None:
    assert postback_timestamp_ms({"timestamp": value}) == ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("FALSE", False), (1, True), (0, False), (None, None), (2, None)],
)
def test_flag(value: object, expected: bool | None) -> None:
    assert flag(value) is expected


def test_team_examples_are_accepted() -> None:
    files = sorted(TESTDATA.glob("*.json"))
    assert files
    for path in files:
        postback = json.loads(path.read_text())["postback"]
        assert parse_postback(json.dumps(postback).encode(), {}) == postback, path.name


@pytest.mark.parametrize(("name", "value"), [("transaction-id", "t" * 101), ("app-id", 10**21 // 7),
                                             ("ad-network-id", "n" * 201), ("version", "4.0" * 4)])
def test_values_longer_than_their_stored_column_are_400(name: str, value: object) -> None:
    postback = orjson.loads(GUIDE_FIXED[0])
    postback[name] = str(value) if name == "app-id" else value
    with pytest.raises(InputError) as raised:
        parse_postback(orjson.dumps(postback), {})
    assert raised.value.field == name


# --------------------------------------------------------------------- personal data in the enrichment


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_personal_data_in_the_query_is_hashed_or_dropped_and_apple_fields_untouched() -> None:
    postback = COMPLETE["4.0"]
    parsed = parse_postback(body(postback), {"email": "Jane@Example.com", "user_phone": "+1 650 555 0100",
                                             "note": "jane@example.com", "jane@example.com": "1",
                                             "ad-network-campaign-name": "summer"})
    assert parsed["email"] == _sha("jane@example.com") and parsed["user_phone"] == _sha("16505550100")
    assert "note" not in parsed and "jane@example.com" not in parsed
    assert parsed["ad-network-campaign-name"] == "summer"
    assert {name: parsed[name] for name in postback} == postback


@pytest.mark.parametrize(("enriched", "field"), [
    ({"email": "jane@example.com"}, "email"),
    ({"partner": {"profile": {"phone": "+1 650 555 0100"}}}, "partner.profile.phone"),
    ({"ad-network-campaign-name": "call +44 20 7946 0958"}, "ad-network-campaign-name"),
    ({"x@example.com": 1}, "*"),
])
def test_personal_data_in_the_body_is_refused_since_the_body_is_kept_as_received(enriched: dict[str, Any],
                                                                                field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_postback(body({**COMPLETE["4.0"], **enriched}), {})
    assert info.value.field == field and "hashed" in info.value.message


def test_hashed_personal_data_in_the_body_is_accepted() -> None:
    hashed = {"email": _sha("jane@example.com"), "ad-network-campaign-name": "summer"}
    parsed = parse_postback(body({**COMPLETE["4.0"], **hashed}), {})
    assert enrichment(parsed) == hashed


def test_enrichment_nested_too_deep_is_a_body_error() -> None:
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    with pytest.raises(InputError) as info:
        parse_postback(body({**COMPLETE["4.0"], "partner": deep}), {})
    assert info.value.field == "body"
