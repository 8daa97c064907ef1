"""Erasure's pure parts: identifiers hashed as the gateway hashes them, SKAN IPs anonymised, texts scrubbed."""

from __future__ import annotations

import hashlib

import pytest

from services.admin.api.privacy import ErasureIn
from services.privacy.erasure import (
    ERASED,
    anonymise_ip,
    anonymised_postback,
    hash_identifiers,
    scrubbed,
)
from services.privacy.user_data import hash_user_data
from shared.errors import InputError


def test_identifiers_are_hashed_exactly_as_the_gateway_hashes_user_data() -> None:
    user = {"email": " Jane.Doe@Example.COM ", "phone": "+1 (650) 555-0100", "external_id": " user-42"}
    gateway = hash_user_data(user)
    identifiers = hash_identifiers(device_id=" idfv-1 ", **user)
    assert identifiers.kinds == ("device_id", "external_id", "email", "phone")
    assert identifiers.device_id == "idfv-1"  # trimmed, as the gateway trims device.device_id
    assert identifiers.hashes == {"external_id": gateway["external_id"], "email": gateway["em"],
                                  "phone": gateway["ph"]}
    assert identifiers.phone_e164_hash == gateway["ph_e164"]
    # external_id is hashed as sent (the gateway does not trim it), so the space matters
    assert identifiers.hashes["external_id"] == hashlib.sha256(b" user-42").hexdigest()


def test_a_hash_is_taken_as_already_hashed_and_no_raw_value_is_kept() -> None:
    email_hash = hashlib.sha256(b"jane@example.com").hexdigest()
    identifiers = hash_identifiers(email=email_hash.upper())
    assert identifiers.kinds == ("email",) and identifiers.hashes == {"email": email_hash}
    assert "jane" not in repr(hash_identifiers(email="jane@example.com"))


@pytest.mark.parametrize(("given", "field"), [
    ({}, "body"),
    ({"device_id": "  ", "email": " "}, "body"),
    ({"email": "not-an-address"}, "email"),
    ({"phone": "12"}, "phone"),
    ({"device_id": "dev\x00ice"}, "device_id"),
    ({"external_id": "\ud800"}, "external_id"),
])
def test_unusable_identifiers_name_their_field(given: dict[str, str], field: str) -> None:
    with pytest.raises(InputError) as caught:
        hash_identifiers(**given)
    assert caught.value.field == field and caught.value.message


def test_the_admin_body_keeps_values_as_sent_and_refuses_unknown_fields() -> None:
    assert ErasureIn.model_validate({"external_id": " u "}).external_id == " u "
    with pytest.raises(ValueError):
        ErasureIn.model_validate({"ip": "203.0.113.5"})
    with pytest.raises(ValueError):
        ErasureIn.model_validate({"device_id": "d", "dry_run": "yes"})


@pytest.mark.parametrize(("address", "anonymous"), [
    ("203.0.113.77", "203.0.113.0"),
    (" 198.51.100.1 ", "198.51.100.0"),
    ("2001:db8:1234:5678::1", "2001:db8:1234::"),
    ("::ffff:203.0.113.77", "::"),  # IPv6 rules for a mapped address: only the /48
    ("not an address", None),
    (42, None),
])
def test_an_ip_keeps_only_its_network(address: object, anonymous: str | None) -> None:
    assert anonymise_ip(address) == anonymous


def test_a_postbacks_ip_is_anonymised_in_the_json_and_the_raw_body_alike() -> None:
    raw = '{"transaction-id":"t1","ip":"203.0.113.77","ad-network-name":"net"}'
    postback = {"transaction-id": "t1", "ip": "203.0.113.77", "ad-network-name": "net"}
    anonymised = anonymised_postback(postback, raw)
    assert anonymised == ({**postback, "ip": "203.0.113.0"},
                          '{"transaction-id":"t1","ip":"203.0.113.0","ad-network-name":"net"}')
    assert anonymised_postback(*anonymised) is None  # nothing left to do: not counted again
    assert anonymised_postback({"transaction-id": "t1"}, "{}") is None
    assert anonymised_postback({"ip": None}, '{"ip": null}') is None
    assert anonymised_postback({"ip": "garbage"}, '{"ip": "garbage"}') == ({"ip": None}, '{"ip": null}')


def test_scrubbing_replaces_every_occurrence() -> None:
    text = "invalid em abc123abc123 (abc123abc123)"
    assert scrubbed(text, ["abc123abc123"]) == f"invalid em {ERASED} ({ERASED})"
    assert scrubbed(text, []) == text
