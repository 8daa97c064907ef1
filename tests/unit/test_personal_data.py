"""services.privacy.personal_data: which names are personal data, which values look like it, and scrubbing."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.privacy.personal_data import (
    DROPPED,
    MAX_DEPTH,
    Findings,
    TooDeep,
    field_kind,
    hash_field,
    identifier_problem,
    report_drops,
    scrub,
    scrub_referrer,
    scrub_text,
    value_kind,
    with_offered_hashes,
)
from services.privacy.user_data import hash_user_data

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    *[(name, "email") for name in ("email", "Email", "EMAIL", "e_mail", "e-mail", "E-Mail", "eMail", "userEmail",
                                    "user_email", "UserEmail", "emailAddress", "email_address", "emails",
                                    "email_addresses", "$email", "customer.email", "billingEmail", "em")],
    *[(name, "phone") for name in ("phone", "phone_number", "phoneNumber", "PhoneNumber", "$phoneNumber", "mobile",
                                    "mobileNumber", "mobile_phone", "cellPhone", "telephone", "tel", "msisdn",
                                    "phone2", "phones", "phone_numbers", "contact_phone", "ph")],
    *[(name, "first_name") for name in ("first_name", "firstName", "FirstName", "givenName", "fname", "fn")],
    *[(name, "last_name") for name in ("last_name", "lastName", "surname", "familyName", "lname", "ln")],
    *[(name, "date_of_birth") for name in ("date_of_birth", "dateOfBirth", "dob", "DOB", "birthdate", "birth_date",
                                            "birthday", "db")],
    *[(name, "name") for name in ("full_name", "fullName", "middle_name", "customer_name", "cardholderName")],
    *[(name, "address") for name in ("street", "street_address", "address_line_1", "addressLine2", "home_address",
                                      "shippingAddress")],
])
def test_personal_names_are_recognised_whatever_the_case_and_separators(name: str, kind: str) -> None:
    assert field_kind(name) == kind


@pytest.mark.parametrize("name", [
    "name", "username", "user_name", "product_name", "display_name", "phone_model", "iphone", "smartphone",
    "email_verified", "email_count", "is_mobile", "has_email", "num_phones", "number_of_emails",
    "total_phones", "item", "ip_address", "mac_address",
    "voicemail", "hotel", "country", "city", "zip", "gender", "sku", "plan", "level", "device_id", "external_id",
    "emailing_campaign", "", "_", "123", "$idfa", "$gpsAdId",
])
def test_other_names_are_not(name: str) -> None:
    assert field_kind(name) is None


_SEPARATORS = st.sampled_from(["_", "-", ".", " ", "$", ""])
_TERMS = {"email": ["email"], "phone": ["phone", "number"], "first_name": ["first", "name"],
          "last_name": ["last", "name"], "date_of_birth": ["date", "of", "birth"]}


@st.composite
def spelt(draw: st.DrawFn) -> tuple[str, str]:
    """(a spelling of a personal term with an optional qualifier before it, the term's kind)."""
    kind = draw(st.sampled_from(sorted(_TERMS)))
    words = [*draw(st.lists(st.sampled_from(["user", "customer", "billing", "primary", "contact"]), max_size=2)),
             *_TERMS[kind]]
    style = draw(st.sampled_from(["lower", "upper", "camel", "pascal"]))
    if style in ("camel", "pascal"):
        joined = "".join(word.capitalize() for word in words)
        return (joined[0].lower() + joined[1:] if style == "camel" else joined), kind
    separator = draw(_SEPARATORS) or "_"
    text = separator.join(words)
    return (text.upper() if style == "upper" else text), kind


@PROPERTY
@given(spelt())
def test_property_any_spelling_of_a_term_with_a_qualifier_is_recognised(case: tuple[str, str]) -> None:
    name, kind = case
    assert field_kind(name) == kind


def test_a_long_name_is_judged_but_not_cached() -> None:
    assert field_kind("x" * 5000 + "_email") == "email"
    assert field_kind("x" * 5000) is None


# --- shapes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "jane@example.com", "Jane.Doe+promo@Example.CO.UK", "mailto:jane@example.com", "write to jane@example.com.",
    "Müller@Bücher.de", "jane%40example.com", "https://x.test/?e=jane%40example.com", "jane@example.xn--p1ai",
])
def test_emails_are_seen_inside_any_text(text: str) -> None:
    assert value_kind(text) == "email"


@pytest.mark.parametrize("text", [
    "+1 650 555 0100", "+16505550100", "+1 (650) 555-0100", "+1-650-555-0100", "(650) 555-0100", "650-555-0100",
    "650.555.0100", "650 555 0100", "1-650-555-0100", "+44 20 7946 0958", "0044 20 7946 0958", "020 7946 0958",
    "06 12 34 56 78", "030 1234567", "06-12345678", "(+33) 6 12 34 56 78", "+49 (0)30-1234567",
    "tel:+16505550100", "call me on +44 20 7946 0958 tomorrow", "%2B16505550100",
])
def test_phones_are_seen_inside_any_text(text: str) -> None:
    assert value_kind(text) == "phone"


@pytest.mark.parametrize("text", [
    "icon@2x.png", "logo@3x.jpg", "@jane", "a@b", "user@localhost", "16505550100", "1700000000000", "2024-01-15",
    "2024-01-15T10:30:00+05:30", "01-02-2024 10:30", "15.01.2024", "203.0.113.5", "2001:db8::1", "10.0.19041.1234",
    "123e4567-e89b-12d3-a456-426614174000", "94025-1234", "+37.7749 -122.4194", "UTC+05:30", "+1000", "v1.2.3",
    "978-0-306-40615-7", "123-45-6789", "IwAR0abc-Fb.Click_1", "Cj0KCQiA+1234567abc", "$12,345,678.90", "1,234,567",
    "12 345 678", "0 5 10 15 20", "coins_100", "sha256:" + "a" * 64, "E.C.P.tiktok-1",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "DemoApp/3.2.1 CFNetwork/1410.0.3 Darwin/22.6.0",
])
def test_ids_dates_versions_and_addresses_are_not_personal(text: str) -> None:
    assert value_kind(text) is None


@PROPERTY
@given(st.emails(), st.text(max_size=20), st.text(max_size=20))
def test_property_an_email_is_seen_wherever_it_sits(email: str, before: str, after: str) -> None:
    assert value_kind(f"{before} {email} {after}") == "email"


@st.composite
def formatted_phone(draw: st.DrawFn) -> str:
    """An E.164 number (1-3 digit country code, 7-12 digit rest) written with +, spaces, dashes or brackets."""
    country = str(draw(st.integers(1, 999)))
    rest = draw(st.text("0123456789", min_size=7, max_size=15 - len(country)))
    groups, index = [], 0
    while index < len(rest):
        size = draw(st.integers(2, 4))
        groups.append(rest[index:index + size])
        index += size
    separator = draw(st.sampled_from([" ", "-", ""]))
    bracketed = draw(st.booleans())
    head = f"+{country} ({groups[0]})" if bracketed and len(groups) > 1 else f"+{country}{separator}{groups[0]}"
    return head + "".join(separator + group for group in groups[1:])


@PROPERTY
@given(formatted_phone(), st.sampled_from(["", "tel:", "call ", "(", "phone: "]), st.sampled_from(["", " ", ".", ")"]))
def test_property_an_international_phone_is_seen(phone: str, before: str, after: str) -> None:
    assert value_kind(before + phone + after) == "phone"


@PROPERTY
@given(st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.integers(0, 10**18).map(str),
    st.datetimes().map(lambda d: d.isoformat()), st.dates().map(lambda d: d.isoformat()),
    st.ip_addresses().map(str), st.tuples(*[st.integers(0, 999)] * 3).map(lambda v: ".".join(map(str, v))),
    st.floats(allow_nan=False, allow_infinity=False).map(str), st.text("abcdefghijklmnopqrstuvwxyz_", max_size=40),
    st.binary(min_size=32, max_size=32).map(lambda b: b.hex()),
))
def test_property_ids_dates_versions_and_numbers_are_never_taken_for_personal_data(text: str) -> None:
    assert value_kind(text) is None


@pytest.mark.parametrize("text", [
    "a" * 200_000 + "@", "a." * 100_000 + "@x", "1 " * 100_000, "+1" * 100_000, "0 12 " * 50_000, "%" * 200_000,
    "a@" + "b." * 100_000 + "!", "(" * 200_000, "1-" * 100_000,
])
def test_a_hostile_string_is_judged_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    value_kind(text)
    assert time.perf_counter() - started < 1.0


def test_identifiers_are_refused_with_a_reason_only_when_they_look_personal() -> None:
    assert identifier_problem("dev-123") is None and identifier_problem("IwAR0abc") is None
    assert "email address" in (identifier_problem("jane@example.com") or "")
    assert "phone number" in (identifier_problem("+16505550100") or "")


# --- hashing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "user_key", "raw"), [
    ("email", "email", "  Jane.Doe@Example.COM "), ("phone", "phone", "+1 (650) 555-0100"),
    ("phone", "phone", "0044 20 7946 0958"), ("first_name", "first_name", " Zoë "),
    ("last_name", "last_name", "O'Brien"), ("date_of_birth", "date_of_birth", "1990-02-03"),
])
def test_a_valid_value_hashes_as_user_would(kind: str, user_key: str, raw: str) -> None:
    in_place, offered = hash_field(kind, raw)
    assert offered == hash_user_data({user_key: raw})
    assert in_place == next(iter(offered.values()))


def test_an_invalid_or_other_value_is_hashed_lower_cased_and_offers_nothing() -> None:
    assert hash_field("email", " Not An Email ") == (sha("not an email"), {})
    assert hash_field("phone", "12") == (sha("12"), {})
    assert hash_field("date_of_birth", "3rd of May") == (sha("3rd of may"), {})
    assert hash_field("name", " Jane Doe ") == (sha("jane doe"), {})
    assert hash_field("address", "1 Main St") == (sha("1 main st"), {})


def test_a_hash_is_kept_as_a_hash() -> None:
    digest = sha("jane@example.com")
    assert hash_field("email", digest.upper()) == (digest, {"em": digest})
    assert hash_field("phone", digest) == (digest, {"ph": digest})  # no ph_e164: the pre-hash's format is unknown
    assert hash_field("name", digest) == (digest, {})


# --- scrubbing ----------------------------------------------------------------------------------------


def test_scrub_hashes_named_fields_drops_shaped_values_and_keeps_the_rest() -> None:
    findings = Findings()
    source = {
        "plan": "annual", "level": 7, "vip": True, "none": None,
        "profile": {"Email": "Jane@Example.com", "phones": ["+1 650 555 0100", 16505550111],
                    "firstName": "Jane", "email_verified": True, "num_emails": 2},
        "note": "reach me at jane@example.com", "items": ["a", "+44 20 7946 0958", "b"],
        "jane@example.com": "key is personal", "dob": 19900203, "middle_name": 7,
    }
    cleaned = scrub(source, "properties", findings)
    assert cleaned == {
        "plan": "annual", "level": 7, "vip": True, "none": None,
        "profile": {"Email": sha("jane@example.com"), "phones": [sha("16505550100"), sha("16505550111")],
                    "firstName": sha("jane"), "email_verified": True, "num_emails": 2},
        "items": ["a", "b"], "dob": sha("19900203"), "middle_name": 7,
    }
    assert sorted(findings.dropped) == [("properties.*", "email"), ("properties.items[1]", "phone"),
                                        ("properties.note", "email")]
    assert ("properties.profile.Email", "email") in findings.hashed
    assert findings.user_hashes == {"em": sha("jane@example.com"), "ph": sha("16505550100"),
                                    "ph_e164": sha("+16505550100"), "fn": sha("jane"), "db": sha("19900203")}
    assert source["profile"] == {"Email": "Jane@Example.com", "phones": ["+1 650 555 0100", 16505550111],
                                 "firstName": "Jane", "email_verified": True, "num_emails": 2}  # left as it was


def test_everything_inside_a_personal_field_is_hashed() -> None:
    findings = Findings()
    cleaned = scrub({"phone": {"home": "ext 12", "work": {"number": "+1 650 555 0100", "kind": "desk"}}}, "",
                    findings)
    assert cleaned == {"phone": {"home": sha("ext 12"), "work": {"number": sha("16505550100"),
                                                                     "kind": sha("desk")}}}
    assert findings.user_hashes["ph"] == sha("16505550100")


def test_scrub_returns_the_same_objects_when_nothing_is_personal() -> None:
    source: dict[str, Any] = {"a": [1, {"b": "c"}], "d": "e", "blank_email": " "}
    assert scrub(source, "", Findings()) is source
    assert scrub("+1 650 555 0100", "x", Findings()) is DROPPED
    assert scrub_text("Bot (ops@example.com)", "device.user_agent", Findings()) is None
    assert scrub_text("App/1.0", "device.user_agent", Findings()) == "App/1.0"


def test_scrub_refuses_nesting_beyond_the_limit() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    scrub(deep, "", Findings())
    with pytest.raises(TooDeep):
        scrub([deep], "", Findings())


_KEYS = st.one_of(st.sampled_from(["email", "userEmail", "phone_number", "mobile", "firstName", "dob", "note", "sku",
                                   "tags", "jane@example.com", "+1 650 555 0100"]),
                  st.text(max_size=8))
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=20),
                    st.emails(), formatted_phone(), st.sampled_from(["+1 (650) 555-0100", "x jane@example.com y"]))
_TREES = st.recursive(_LEAVES, lambda children: st.one_of(st.lists(children, max_size=4),
                                                          st.dictionaries(_KEYS, children, max_size=4)), max_leaves=25)


def _strings(value: Any, under_personal_name: bool = False) -> list[tuple[str, bool]]:
    if isinstance(value, str):
        return [(value, under_personal_name)]
    if isinstance(value, list):
        return [item for child in value for item in _strings(child, under_personal_name)]
    if isinstance(value, dict):
        found = [(key, False) for key in value]
        for key, child in value.items():
            found += _strings(child, under_personal_name or field_kind(key) is not None)
        return found
    return []


_HEX64 = re.compile(r"[0-9a-f]{64}")


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.dictionaries(_KEYS, _TREES, max_size=6))
def test_property_nothing_personal_is_left_and_scrubbing_again_changes_nothing(tree: dict[str, Any]) -> None:
    findings = Findings()
    cleaned = scrub(tree, "properties", findings)
    for text, under_personal_name in _strings(cleaned):
        if under_personal_name and text.strip():
            assert _HEX64.fullmatch(text), text  # hashed in place
        else:
            assert value_kind(text) is None, text  # nothing left that looks like an email or a phone
    assert scrub(cleaned, "properties", Findings()) == cleaned
    assert all(_HEX64.fullmatch(value) for value in findings.user_hashes.values())
    orjson.dumps(cleaned)


# --- install referrer ---------------------------------------------------------------------------------


def test_referrer_parameters_are_hashed_or_dropped_and_the_rest_kept() -> None:
    findings = Findings()
    raw = "utm_source=google-play&email=Jane%40Example.com&gclid=Cj0-1&memo=%2B1+650+555+0100&x%40y.com=1"
    assert scrub_referrer(raw, "referrer.install_referrer", findings) == (
        f"utm_source=google-play&email={sha('jane@example.com')}&gclid=Cj0-1")
    assert sorted(findings.dropped) == [("referrer.install_referrer.*", "email"),
                                        ("referrer.install_referrer.memo", "phone")]
    assert findings.user_hashes == {"em": sha("jane@example.com")}


def test_a_referrer_encoded_again_is_peeled_only_when_it_changes() -> None:
    clean = "utm_source%3Dgoogle%26gclid%3DCj0-1"
    assert scrub_referrer(clean, "r", Findings()) == clean
    assert scrub_referrer("utm_source%3Dx%26phone%3D%252B16505550100", "r", Findings()) == (
        f"utm_source=x&phone={sha('16505550100')}")
    assert scrub_referrer("jane@example.com", "r", Findings()) is None


# --- user hashes and reporting ------------------------------------------------------------------------


def test_user_hashes_win_and_a_phone_keeps_its_pair() -> None:
    findings = Findings()
    findings.offer({"em": "e1", "ph": "p1", "ph_e164": "q1"})
    findings.offer({"em": "e2", "ph": "p2", "ph_e164": "q2", "fn": "f2"})
    assert findings.user_hashes == {"em": "e1", "ph": "p1", "ph_e164": "q1", "fn": "f2"}
    assert with_offered_hashes({"em": "mine", "ph": "pre-hashed"}, findings) == {
        "em": "mine", "ph": "pre-hashed", "fn": "f2"}
    assert with_offered_hashes({}, findings) == findings.user_hashes


def test_drops_are_counted_and_logged_without_the_value(caplog: pytest.LogCaptureFixture) -> None:
    def count(kind: str) -> float:
        return REGISTRY.get_sample_value("apprefer_personal_data_dropped_total", {"entry": "clicks", "kind": kind}) or 0

    before = count("email"), count("phone")
    findings = Findings()
    scrub({"note": "jane@example.com", "tags": ["+1 650 555 0100"], "jane2@example.com": 1}, "", findings)
    with caplog.at_level(logging.WARNING, logger="services.privacy.personal_data"):
        report_drops("clicks", findings, app_id="app_1")
        report_drops("clicks", Findings(), app_id="app_1")  # nothing dropped: nothing said
    assert (count("email"), count("phone")) == (before[0] + 2, before[1] + 1)
    [logged] = caplog.records
    assert logged.getMessage() == "personal data dropped"
    assert (logged.entry, logged.app_id, logged.dropped, logged.kinds) == (  # type: ignore[attr-defined]
        "clicks", "app_1", 3, ["email", "phone"])
    assert logged.fields == ["note", "tags[0]", "*"]  # type: ignore[attr-defined]
    said = logging.Formatter("%(message)s %(entry)s %(app_id)s %(fields)s %(kinds)s").format(logged)
    assert "jane" not in said and "650" not in said


def test_only_clean_text_is_remembered() -> None:
    from services.privacy import personal_data

    assert value_kind("plan-annual") is None and value_kind("ops@example.com") == "email"
    assert "plan-annual" in personal_data._CLEAN_TEXT  # repeated text costs a lookup
    assert "ops@example.com" not in personal_data._CLEAN_TEXT  # a personal value outlives no request
    assert value_kind("ops@example.com") == "email"
