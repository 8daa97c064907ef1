"""SKAdNetwork signature verification against the team's signed examples (see shared/docs/skan.md)."""

from __future__ import annotations

import ast
import base64
import copy
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.skan import verify as verify_mod
from services.skan.verify import (
    REQUIRED_FIELDS_BY_VERSION,
    SkanFieldError,
    Verification,
    missing_fields,
    signed_message,
    verify_postback,
)
from services.skan.verify_cli import run_verify

TESTDATA = Path(__file__).resolve().parents[1] / "data" / "skan"
SKIP_REASON = f"SKAN reference examples not found in {TESTDATA} (the team's shared folder, next to the repo)"

P192 = "MEkwEwYHKoZIzj0CAQYIKoZIzj0DAQEDMgAEMyHD625uvsmGq4C43cQ9BnfN2xslVT5V1nOmAMP6qaRRUll3PB1JYmgSm+62sosG"
P256 = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWdp8GPcGqmhgzEFj9Z2nSpQVddayaPe4FMzqM9wib1+aHaaIzoHoLN9zW4K8y4SPykE3"
    "YVK3sVqW6Af0lfx3gg=="
)

# The table of skan.md, restated here instead of imported so a wrong table in verify.py cannot pass
# by agreeing with itself.
_V2 = ["version", "ad-network-id", "campaign-id", "app-id", "transaction-id", "redownload", "source-app-id"]
SIGNED: dict[str, list[str]] = {
    "1.0": ["ad-network-id", "campaign-id", "app-id", "transaction-id"],
    "2.0": _V2,
    "2.1": _V2,
    "2.2": [*_V2, "fidelity-type"],
    "3.0": [*_V2, "fidelity-type", "did-win"],
    "4.0": [
        "version",
        "ad-network-id",
        "source-identifier",
        "app-id",
        "transaction-id",
        "redownload",
        "source-app-id",
        "source-domain",
        "fidelity-type",
        "did-win",
        "postback-sequence-index",
    ],
}
KEY_BY_VERSION = {"1.0": P192, "2.0": P192, "2.1": P256, "2.2": P256, "3.0": P256, "4.0": P256}

Case = dict[str, Any]


def _case_paths() -> list[Path]:
    return sorted(TESTDATA.glob("*.json")) if TESTDATA.is_dir() else []


def _params(only_valid: bool) -> list[Any]:
    paths = [p for p in _case_paths() if not only_valid or json.loads(p.read_text())["expected_valid"]]
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON))]
    return [pytest.param(p, id=p.stem) for p in paths]


ALL_CASES = _params(only_valid=False)
VALID_CASES = _params(only_valid=True)


def load(path: Path | str) -> Case:
    path = TESTDATA / path if isinstance(path, str) else path
    if not path.is_file():
        pytest.skip(f"{path.name} missing: {SKIP_REASON}")
    case: Case = json.loads(path.read_text(encoding="utf-8"))
    return case


def postback_of(name: str) -> dict[str, Any]:
    postback: dict[str, Any] = copy.deepcopy(load(name)["postback"])
    return postback


def assert_valid(postback: object) -> None:
    result = verify_postback(postback)
    assert result == Verification(valid=True, version=result.version, reason=None), result


def tampered(value: Any) -> Any:
    """A value that renders differently from ``value`` in the signed string."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}x"


def version_of(case: Case) -> str:
    return str(case["postback"].get("version") or "1.0")


# --- the reference examples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_CASES)
def test_reference_example_verifies_to_expected(path: Path) -> None:
    case = load(path)
    result = verify_postback(case["postback"])
    assert result.valid is case["expected_valid"], result
    assert result.version == version_of(case)
    assert (result.reason is None) is result.valid


@pytest.mark.parametrize("path", ALL_CASES)
def test_signed_message_matches_reference_string(path: Path) -> None:
    case = load(path)
    expected = case["signed_string_escaped"].replace("\\u2063", "\u2063").encode("utf-8")
    assert signed_message(case["postback"]) == expected


@pytest.mark.parametrize("path", ALL_CASES)
def test_reference_key_is_the_one_used_for_its_version(path: Path) -> None:
    case = load(path)
    assert case["public_key_b64"] == KEY_BY_VERSION[version_of(case)]


def test_module_keys_are_apples() -> None:
    assert verify_mod.APPLE_P192_SPKI_B64 == P192
    assert verify_mod.APPLE_P256_SPKI_B64 == P256
    assert verify_mod.APPLE_P192_KEY.curve.name == "secp192r1"
    assert verify_mod.APPLE_P256_KEY.curve.name == "secp256r1"


def test_not_der_reference_reason() -> None:
    result = verify_postback(load("whisk_bad_signature_not_DER.json")["postback"])
    assert result == Verification(valid=False, version="4.0", reason="signature is not DER")


# --- what is and is not signed ---------------------------------------------------------------------


def _signed_fields_present(case: Case) -> Iterator[str]:
    postback = case["postback"]
    return (name for name in SIGNED[version_of(case)] if name in postback)


@pytest.mark.parametrize("path", VALID_CASES)
def test_tampering_any_signed_field_invalidates(path: Path) -> None:
    case = load(path)
    fields = list(_signed_fields_present(case))
    assert fields, "an example without signed fields tests nothing"
    for name in fields:
        postback = copy.deepcopy(case["postback"])
        postback[name] = tampered(postback[name])
        result = verify_postback(postback)
        assert not result.valid, name
        # Tampering must be caught by the signature itself (a bad version is caught earlier).
        expected = "unknown version" if name == "version" else "signature does not match"
        assert result.reason is not None and result.reason.startswith(expected), (name, result)


@pytest.mark.parametrize("path", VALID_CASES)
def test_unsigned_fields_can_change(path: Path) -> None:
    case = load(path)
    signed = set(SIGNED[version_of(case)]) | {"attribution-signature", "version"}
    postback = copy.deepcopy(case["postback"])
    unsigned = [name for name in postback if name not in signed]
    for name in unsigned:
        postback[name] = tampered(postback[name])
    # Enrichment added by networks and by other MMPs never takes part in the signature.
    postback.update(
        {
            "conversion-value": 63,
            "coarse-conversion-value": "medium",
            "ad-network-campaign-id": "c1",
            "ad-network-campaign-name": "Summer",
            "ad-network-country-code": "FR",
            "ip": "203.0.113.9",
            "timestamp": 1700000000123,
            "ad-network-source-app-id": 99,
            "adjust-campaign": "x",
            "partner-foo": {"nested": [1, 2]},
        }
    )
    assert_valid(postback)


def test_v1_ignores_version_and_redownload() -> None:
    postback = postback_of("realworld_v1.0_p192_su67r6k2v3.json")
    postback["redownload"] = not postback["redownload"]
    assert_valid(postback)
    del postback["version"]
    del postback["redownload"]
    assert verify_postback(postback) == Verification(valid=True, version="1.0", reason=None)


def test_optional_source_app_id_cannot_be_added_or_removed() -> None:
    with_it = postback_of("realworld_v2.1_ironsource_enriched.json")
    del with_it["source-app-id"]
    assert verify_postback(with_it).reason == "signature does not match"
    without = postback_of("realworld_v2.1_tiktok_adjust_enriched.json")
    without["source-app-id"] = 1299956969
    assert verify_postback(without).reason == "signature does not match"


def test_null_optional_field_leaves_no_slot() -> None:
    postback = postback_of("realworld_v2.1_tiktok_adjust_enriched.json")
    postback["source-app-id"] = None
    assert_valid(postback)


def test_v4_source_domain_cannot_pose_as_source_app_id() -> None:
    postback = postback_of("apple_v4.0_web_fine_high_tier.json")
    postback["source-app-id"] = postback.pop("source-domain")
    assert_valid(postback)  # same slot, same rendering: the slot is "either one"
    postback["source-app-id"] = "example.org"
    assert not verify_postback(postback).valid


# --- rendering ------------------------------------------------------------------------------------


def _swap_number_representation(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isdigit() and (value == "0" or not value.startswith("0")):
        return int(value)
    return value


@pytest.mark.parametrize("path", VALID_CASES)
def test_numbers_and_strings_sign_the_same(path: Path) -> None:
    case = load(path)
    postback = copy.deepcopy(case["postback"])
    swapped = 0
    for name in _signed_fields_present(case):
        new = _swap_number_representation(postback[name])
        swapped += new != postback[name]
        postback[name] = new
    assert swapped, "nothing to swap"
    assert_valid(postback)


def test_integral_float_signs_like_int() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    postback["campaign-id"] = 42.0
    postback["fidelity-type"] = 1.0
    assert_valid(postback)


def test_leading_zeros_are_kept() -> None:
    postback = postback_of("apple_v4.0_web_coarse_low_tier.json")
    postback["source-identifier"] = "039"
    assert verify_postback(postback).reason == "signature does not match"


def test_source_identifer_alias() -> None:
    postback = postback_of("apple_v4.0_web_fine_high_tier.json")
    postback["source-identifer"] = postback.pop("source-identifier")
    assert_valid(postback)
    assert missing_fields(postback) == []
    postback["source-identifer"] = "5238"
    assert verify_postback(postback).reason == "signature does not match"


def test_canonical_source_identifier_wins_over_alias() -> None:
    postback = postback_of("apple_v4.0_web_fine_high_tier.json")
    postback["source-identifer"] = "1111"
    assert_valid(postback)


def test_alias_is_not_campaign_id() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    postback["source-identifer"] = str(postback.pop("campaign-id"))
    assert verify_postback(postback).reason == "missing signed field campaign-id"


# --- separator injection --------------------------------------------------------------------------


def test_separator_injection_is_rejected() -> None:
    # Without the check this forgery verifies: moving source-app-id into redownload keeps the signed
    # string byte for byte, so the signature would "cover" a postback Apple never sent.
    postback = postback_of("realworld_v2.1_ironsource_enriched.json")
    postback["redownload"] = f"false\u2063{postback.pop('source-app-id')}"
    result = verify_postback(postback)
    assert result == Verification(valid=False, version="2.1", reason="field redownload contains U+2063")


def test_separator_in_any_signed_value_is_rejected() -> None:
    postback = postback_of("apple_v4.0_web_fine_high_tier.json")
    for name in ("app-id", "source-domain", "transaction-id"):
        bad = dict(postback, **{name: f"{postback[name]}\u2063"})
        assert verify_postback(bad).reason == f"field {name} contains U+2063"
        with pytest.raises(SkanFieldError):
            signed_message(bad)


def test_separator_in_unsigned_value_is_harmless() -> None:
    postback = postback_of("apple_v4.0_web_fine_high_tier.json")
    postback["ad-network-campaign-name"] = "a\u2063b"
    assert_valid(postback)


# --- bad signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("not base64!", "signature is not base64"),
        ("MEUCIQD4rX6eh38qEhuUKHdap345UbmlzA7KEZ1bhWZu", "signature is not DER"),  # truncated DER
        ("abc", "signature is not base64"),  # bad padding
        ("é", "signature is not base64"),  # non-ASCII
        ("", "signature is not DER"),
        (base64.b64encode(b"hello world").decode(), "signature is not DER"),
        (123, "signature is not a string"),
        (None, "missing attribution-signature"),
    ],
)
def test_garbage_signature(signature: object, reason: str) -> None:
    postback = postback_of("apple_v4.0_web_coarse_low_tier.json")
    if signature is None:
        del postback["attribution-signature"]
    else:
        postback["attribution-signature"] = signature
    assert verify_postback(postback) == Verification(valid=False, version="4.0", reason=reason)


def test_signature_with_stray_characters_is_not_base64() -> None:
    # A lenient decoder would drop the junk and accept this altered signature.
    postback = postback_of("apple_v4.0_web_coarse_low_tier.json")
    signature = postback["attribution-signature"]
    postback["attribution-signature"] = f"{signature[:10]}*\n{signature[10:]}"
    assert verify_postback(postback).reason == "signature is not base64"


def test_valid_signature_of_another_postback_does_not_match() -> None:
    postback = postback_of("apple_v4.0_web_coarse_low_tier.json")
    postback["attribution-signature"] = load("apple_v4.0_web_fine_high_tier.json")["postback"][
        "attribution-signature"
    ]
    assert verify_postback(postback).reason == "signature does not match"


def test_wrong_curve_for_version_does_not_match() -> None:
    # A 2.0 postback is signed with P-192; relabelled 2.1 it must be checked (and fail) with P-256.
    postback = postback_of("realworld_v2.0_p192_v9wttpbfk9.json")
    postback["version"] = "2.1"
    assert verify_postback(postback).reason == "signature does not match"


# --- versions and odd inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["5.0", "", "4", "4.0 ", "1.5"])
def test_unknown_version(version: str) -> None:
    postback = postback_of("apple_v4.0_web_fine_high_tier.json")
    postback["version"] = version
    assert verify_postback(postback) == Verification(
        valid=False, version=None, reason=f"unknown version {version}"
    )
    with pytest.raises(SkanFieldError, match="unknown version"):
        signed_message(postback)


def test_numeric_version_is_invalid() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    postback["version"] = 3.0
    result = verify_postback(postback)
    assert not result.valid
    assert result.reason == "version must be a string, got float"


def test_long_reason_is_truncated() -> None:
    result = verify_postback({"version": "9" * 10_000})
    assert result.reason is not None and len(result.reason) < 100


def test_skan_field_error_is_a_value_error() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    del postback["did-win"]
    with pytest.raises(ValueError, match="missing signed field did-win") as info:
        signed_message(postback)
    assert isinstance(info.value, SkanFieldError)
    assert info.value.field == "did-win"


def test_null_signed_field_is_missing() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    postback["transaction-id"] = None
    assert verify_postback(postback).reason == "missing signed field transaction-id"


def test_jws_postback_is_routed_apart() -> None:
    result = verify_postback({"jws-string": "eyJhbGciOiJFUzI1NiJ9.e30.sig"})
    assert result == Verification(False, None, "AdAttributionKit JWS postbacks are not SKAN signatures")


@pytest.mark.parametrize("thing", [None, [], ["a"], "postback", 42, 1.5, True, b"{}", object()])
def test_non_object_input(thing: object) -> None:
    result = verify_postback(thing)
    assert not result.valid
    assert result.reason is not None and "not a JSON object" in result.reason


WEIRD_VALUES: list[Any] = [
    None,
    [],
    {},
    {"a": 1},
    float("nan"),
    float("inf"),
    10**5000,
    1e-7,
    "",
    "\u2063",
    "\ud800",  # lone surrogate: json.loads accepts it, UTF-8 cannot encode it
    b"bytes",
    object(),
    -1,
]


@pytest.mark.parametrize("path", VALID_CASES)
def test_never_raises_on_weird_field_values(path: Path) -> None:
    case = load(path)
    for name in [*case["postback"], "source-identifer", "jws-string"]:
        for value in WEIRD_VALUES:
            postback = copy.deepcopy(case["postback"])
            postback[name] = value
            result = verify_postback(postback)
            assert isinstance(result, Verification)
            assert (result.reason is None) is result.valid
            missing_fields(postback)  # must not raise either


def test_lone_surrogate_is_invalid_not_an_exception() -> None:
    postback = json.loads(json.dumps(postback_of("apple_v3.0_winning.json")).replace("6aafb7a5", "\\ud800"))
    assert verify_postback(postback).reason == "field transaction-id is not valid Unicode"


def test_huge_int_is_invalid_not_an_exception() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    postback["campaign-id"] = 10**5000
    assert verify_postback(postback).reason == "field campaign-id is not a plain number"


@pytest.mark.parametrize(("value", "text"), [(42, "42"), ("42", "42"), (42.0, "42"), (1e-7, "0.0000001")])
def test_plain_decimal_rendering(value: object, text: str) -> None:
    postback = postback_of("realworld_v1.0_p192_su67r6k2v3.json")
    postback["campaign-id"] = value
    assert signed_message(postback).split("\u2063".encode())[1] == text.encode()


# --- mandatory fields for the gateway -------------------------------------------------------------


def test_required_fields_table() -> None:
    assert set(REQUIRED_FIELDS_BY_VERSION) == set(SIGNED)
    optional = {"source-app-id", "source-domain"}
    for version, signed in SIGNED.items():
        expected = {"ad-network-id", "transaction-id", "app-id"} | (set(signed) - optional)
        assert set(REQUIRED_FIELDS_BY_VERSION[version]) == expected, version
    assert "redownload" not in REQUIRED_FIELDS_BY_VERSION["1.0"]


@pytest.mark.parametrize("path", ALL_CASES)
def test_reference_examples_miss_nothing(path: Path) -> None:
    assert missing_fields(load(path)["postback"]) == []


def test_missing_fields_lists_absent_and_null() -> None:
    postback = postback_of("apple_v4.0_web_coarse_low_tier.json")
    del postback["transaction-id"]
    postback["postback-sequence-index"] = None
    del postback["source-domain"]  # optional
    del postback["attribution-signature"]  # a verification outcome, not a 400
    assert missing_fields(postback) == ["transaction-id", "postback-sequence-index"]


def test_missing_fields_edge_cases() -> None:
    assert missing_fields([]) == ["ad-network-id", "transaction-id", "app-id"]
    assert missing_fields({}) == ["ad-network-id", "transaction-id", "app-id", "campaign-id"]  # 1.0
    assert missing_fields({"version": "9.9", "app-id": 1}) == ["ad-network-id", "transaction-id"]
    assert missing_fields({"jws-string": "a.b.c"}) == []
    assert missing_fields({"jws-string": None}) == ["jws-string"]


def test_verify_module_is_pure() -> None:
    # The gateway and the CLI import this module: it must not drag kafka, aiohttp or a database in.
    tree = ast.parse(Path(verify_mod.__file__).read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


# --- CLI ------------------------------------------------------------------------------------------


def run_cli(path: str, stdin_text: str = "") -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = run_verify(path, stdin=io.StringIO(stdin_text), stdout=out)
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1, text
    line: dict[str, Any] = json.loads(text)
    assert set(line) == {"valid", "version", "reason"}
    return code, line


def test_cli_valid_wrapper_file() -> None:
    path = TESTDATA / "apple_v3.0_winning.json"
    load(path)
    assert run_cli(str(path)) == (0, {"valid": True, "version": "3.0", "reason": None})


def test_cli_bare_postback_and_stdin(tmp_path: Path) -> None:
    postback = postback_of("realworld_v1.0_p192_su67r6k2v3.json")
    file = tmp_path / "bare.json"
    file.write_text(json.dumps(postback), encoding="utf-8")
    assert run_cli(str(file)) == (0, {"valid": True, "version": "1.0", "reason": None})
    assert run_cli("-", json.dumps(postback)) == (0, {"valid": True, "version": "1.0", "reason": None})


def test_cli_utf8_bom_file(tmp_path: Path) -> None:
    file = tmp_path / "bom.json"
    file.write_bytes(b"\xef\xbb\xbf" + json.dumps(postback_of("apple_v3.0_winning.json")).encode())
    assert run_cli(str(file))[0] == 0


def test_cli_invalid_signature() -> None:
    path = TESTDATA / "whisk_bad_signature_not_DER.json"
    load(path)
    assert run_cli(str(path)) == (1, {"valid": False, "version": "4.0", "reason": "signature is not DER"})


def test_cli_tampered_postback_on_stdin() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    postback["did-win"] = False
    code, line = run_cli("-", json.dumps({"postback": postback}))
    assert (code, line["valid"], line["reason"]) == (1, False, "signature does not match")


@pytest.mark.parametrize(
    ("content", "reason_part"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ("", "is not JSON"),
        ("[1, 2]", "not an object"),
        ('"a string"', "not an object"),
        ('{"postback": [1]}', "postback field is not an object"),
        ("[" * 100_000, "is not JSON"),
    ],
)
def test_cli_unreadable(tmp_path: Path, content: str | None, reason_part: str) -> None:
    file = tmp_path / "input.json"
    if content is not None:
        file.write_text(content, encoding="utf-8")
    code, line = run_cli(str(file))
    assert code == 2
    assert line["valid"] is False and line["version"] is None
    assert reason_part in line["reason"]


def test_cli_unreadable_stdin_and_directory(tmp_path: Path) -> None:
    assert run_cli("-", "nope")[0] == 2
    assert run_cli(str(tmp_path))[0] == 2
    file = tmp_path / "binary.json"
    file.write_bytes(b"\xff\xfe\xfa")
    assert run_cli(str(file))[0] == 2


def _reencoded(signature: bytes, how: str) -> bytes:
    """A BER (not DER) or otherwise malformed re-encoding of a DER ECDSA signature's two INTEGERs."""
    body = signature[2:]
    r_len = body[1]
    r, rest = body[2 : 2 + r_len], body[2 + r_len :]
    if how == "trailing byte":
        return signature + b"\x00"
    if how == "long-form length":
        return bytes([0x30, 0x81, len(body)]) + body
    if how == "padded r":
        return bytes([0x30, len(body) + 1, 0x02, r_len + 1, 0x00]) + r + rest
    return bytes([0x30, len(body), 0x02, r_len, r[0] | 0x80]) + r[1:] + rest  # negative r


@pytest.mark.parametrize("how", ["trailing byte", "long-form length", "padded r", "negative r"])
@pytest.mark.parametrize("name", ["apple_v4.0_web_coarse_low_tier.json", "realworld_v1.0_p192_su67r6k2v3.json"])
def test_non_der_forms_of_a_valid_signature_are_not_der(name: str, how: str) -> None:
    # verify_postback only parses the DER after a failed check: no non-DER form of a good signature may pass.
    postback = postback_of(name)
    signature = base64.b64decode(postback["attribution-signature"])
    postback["attribution-signature"] = base64.b64encode(_reencoded(signature, how)).decode()
    assert verify_postback(postback) == Verification(valid=False, version=version_of({"postback": postback}),
                                                     reason="signature is not DER")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (10**18 - 1, str(10**18 - 1)),
        (10**18, str(10**18)),
        (-(10**18), str(-(10**18))),
        (True, "true"),
        (False, "false"),
        ("café", "café"),
        (7.25, "7.25"),
    ],
)
def test_rendering_on_and_off_the_fast_paths(value: object, text: str) -> None:
    postback = postback_of("realworld_v1.0_p192_su67r6k2v3.json")
    postback["campaign-id"] = value
    assert signed_message(postback).split("\u2063".encode())[1] == text.encode()


def test_non_ascii_separator_is_still_caught() -> None:
    postback = postback_of("apple_v3.0_winning.json")
    postback["transaction-id"] = "é\u2063x"
    assert verify_postback(postback).reason == "field transaction-id contains U+2063"
