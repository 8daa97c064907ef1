"""Verification of SKAdNetwork ``attribution-signature`` values (versions 1.0 to 4.0).

Pure module (stdlib + ``cryptography``): the gateway, the decoder and the CLI all call it, so it must not
pull in kafka, aiohttp or a database. The rules come from docs/skan.md in the team's shared folder:
join the version's signed fields with U+2063, UTF-8 encode, verify the base64 DER ECDSA/SHA-256
signature with Apple's P-192 (1.0, 2.0) or P-256 (2.1 and later) key.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import load_der_public_key

__all__ = [
    "APPLE_P192_KEY",
    "APPLE_P192_SPKI_B64",
    "APPLE_P256_KEY",
    "APPLE_P256_SPKI_B64",
    "REQUIRED_FIELDS_BY_VERSION",
    "SEPARATOR",
    "SUPPORTED_VERSIONS",
    "SkanFieldError",
    "Verification",
    "missing_fields",
    "signed_message",
    "verify_postback",
]

SEPARATOR = "\u2063"  # INVISIBLE SEPARATOR, UTF-8 E2 81 A3

APPLE_P192_SPKI_B64 = (
    "MEkwEwYHKoZIzj0CAQYIKoZIzj0DAQEDMgAEMyHD625uvsmGq4C43cQ9BnfN2xslVT5V1nOmAMP6qaRRUll3PB1JYmgSm+62sosG"
)
APPLE_P256_SPKI_B64 = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWdp8GPcGqmhgzEFj9Z2nSpQVddayaPe4FMzqM9wib1+aHaaIzoHoLN9zW4K8y4S"
    "PykE3YVK3sVqW6Af0lfx3gg=="
)


def _load_ec_key(spki_b64: str) -> ec.EllipticCurvePublicKey:
    key = load_der_public_key(base64.b64decode(spki_b64))
    if not isinstance(key, ec.EllipticCurvePublicKey):  # guards a mistyped constant, not runtime input
        raise TypeError("Apple SKAdNetwork key is not an EC key")
    return key


# Parsed once at import: key parsing costs more than a verification.
APPLE_P192_KEY = _load_ec_key(APPLE_P192_SPKI_B64)
APPLE_P256_KEY = _load_ec_key(APPLE_P256_SPKI_B64)

_ECDSA_SHA256 = ec.ECDSA(SHA256())
_AAK_REASON = "AdAttributionKit JWS postbacks are not SKAN signatures"
# Every postback needs these, whatever its version (they key storage and de-duplication).
_ALWAYS_REQUIRED = ("ad-network-id", "transaction-id", "app-id")
# The guide's 4.0 examples misspell this field and networks copy them; the canonical name wins if both.
_ALIASES: Mapping[str, tuple[str, ...]] = MappingProxyType({"source-identifier": ("source-identifer",)})


class SkanFieldError(ValueError):
    """The postback cannot be turned into a signed message (missing field, unknown version, bad value)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class Verification:
    valid: bool
    version: str | None
    reason: str | None  # None exactly when valid


@dataclass(frozen=True)
class _Optional:
    """An optional signed slot: the first alternative present and non-null; none leaves no slot at all."""

    alternatives: tuple[str, ...]


_Slot = str | _Optional


@dataclass(frozen=True)
class _Rule:
    slots: tuple[_Slot, ...]
    key: ec.EllipticCurvePublicKey


_V2_SLOTS: tuple[_Slot, ...] = (
    "version",
    "ad-network-id",
    "campaign-id",
    "app-id",
    "transaction-id",
    "redownload",
    _Optional(("source-app-id",)),
)
_V22_SLOTS = (*_V2_SLOTS, "fidelity-type")

_RULES: Mapping[str, _Rule] = MappingProxyType(
    {
        # 1.0 signs neither version nor redownload, even when real 1.0 postbacks carry them.
        "1.0": _Rule(("ad-network-id", "campaign-id", "app-id", "transaction-id"), APPLE_P192_KEY),
        "2.0": _Rule(_V2_SLOTS, APPLE_P192_KEY),
        "2.1": _Rule(_V2_SLOTS, APPLE_P256_KEY),
        "2.2": _Rule(_V22_SLOTS, APPLE_P256_KEY),
        "3.0": _Rule((*_V22_SLOTS, "did-win"), APPLE_P256_KEY),
        "4.0": _Rule(
            (
                "version",
                "ad-network-id",
                "source-identifier",
                "app-id",
                "transaction-id",
                "redownload",
                _Optional(("source-app-id", "source-domain")),
                "fidelity-type",
                "did-win",
                "postback-sequence-index",
            ),
            APPLE_P256_KEY,
        ),
    }
)

SUPPORTED_VERSIONS: tuple[str, ...] = tuple(_RULES)


class _SignedSlot(NamedTuple):
    """A slot of _Rule compiled for the hot path (a tuple: unpacking it is cheaper than attribute access)."""

    name: str  # the key read first; also the field its value renders as and a missing-slot error names
    fallbacks: tuple[tuple[str, str], ...]  # then, in order: (postback key, field name it renders as)
    optional: bool


def _sources(name: str) -> tuple[tuple[str, str], ...]:
    return tuple((key, name) for key in (name, *_ALIASES.get(name, ())))


def _compile(slot: _Slot) -> _SignedSlot:
    if isinstance(slot, _Optional):
        sources = tuple(source for name in slot.alternatives for source in _sources(name))
        return _SignedSlot(slot.alternatives[0], sources[1:], optional=True)
    return _SignedSlot(slot, _sources(slot)[1:], optional=False)


# Compiled once: building the message walks these instead of re-resolving slots and aliases per postback.
_SIGNED_SLOTS: Mapping[str, tuple[_SignedSlot, ...]] = MappingProxyType(
    {version: tuple(_compile(slot) for slot in rule.slots) for version, rule in _RULES.items()}
)
# Verification is immutable: one shared success value per version spares an allocation per postback.
_VALID: Mapping[str, Verification] = MappingProxyType(
    {version: Verification(valid=True, version=version, reason=None) for version in _RULES}
)
# Any int strictly inside this renders with str() (far below sys.get_int_max_str_digits' smallest limit).
_PLAIN_INT_BOUND = 10**18


def _required_for(rule: _Rule) -> tuple[str, ...]:
    signed = [slot for slot in rule.slots if isinstance(slot, str)]
    return tuple(dict.fromkeys([*_ALWAYS_REQUIRED, *signed]))  # ordered de-duplication


# Mandatory fields per version (the gateway answers 400 when one is absent or null). The signature itself is
# not listed: test apps send unsigned postbacks, and whether that matters is a per-app policy, not a 400.
REQUIRED_FIELDS_BY_VERSION: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {version: _required_for(rule) for version, rule in _RULES.items()}
)


def _short(text: str, limit: int = 32) -> str:
    # Reasons end up in logs and in the database: never echo an attacker's megabyte back.
    return text if len(text) <= limit else text[:limit] + "..."


def _lookup(postback: Mapping[str, object], name: str) -> object | None:
    """The field's value, through its aliases; JSON null counts as absent."""
    value = postback.get(name)
    if value is not None:
        return value
    for alias in _ALIASES.get(name, ()):
        value = postback.get(alias)
        if value is not None:
            return value
    return None


def _resolve_version(postback: Mapping[str, object]) -> str:
    raw = postback.get("version")
    if raw is None:  # SKAN 1.0 postbacks had no version field
        return "1.0"
    if not isinstance(raw, str):
        # JSON 3.0 (a number) would render "3" and never match what Apple signed.
        raise SkanFieldError(f"version must be a string, got {type(raw).__name__}", "version")
    if raw not in _RULES:
        raise SkanFieldError(f"unknown version {_short(raw)}", "version")
    return raw


def _render_number(name: str, value: int | float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise SkanFieldError(f"field {name} is not a finite number", name)
    try:
        if isinstance(value, int):
            return str(value)  # ValueError past sys.get_int_max_str_digits(): not a value Apple signs
    except ValueError as exc:
        raise SkanFieldError(f"field {name} is not a plain number", name) from exc
    if value.is_integer():
        return str(int(value))  # 42.0 signs as "42", like 42 and "42"
    # repr() is the shortest exact form; Decimal drops its exponent notation (1e-07 -> 0.0000001).
    return format(Decimal(repr(value)), "f")


def _render(name: str, value: object) -> str:
    # Exact-type fast paths for what real postbacks carry (bool is not `is int`); the rest gets every check.
    if type(value) is str and value.isascii():
        return value  # ASCII holds neither U+2063 nor a lone surrogate
    if type(value) is int and -_PLAIN_INT_BOUND < value < _PLAIN_INT_BOUND:
        return str(value)
    if type(value) is bool:
        return "true" if value else "false"
    return _render_checked(name, value)


def _render_checked(name: str, value: object) -> str:
    # bool before int: True is an int in Python but Apple signs it as "true".
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # JSON "\ud800" parses to a lone surrogate
                raise SkanFieldError(f"field {name} is not valid Unicode", name) from exc
    elif isinstance(value, int | float):
        text = _render_number(name, value)
    else:
        raise SkanFieldError(f"field {name} has unsupported type {type(value).__name__}", name)
    if SEPARATOR in text:
        # A value holding the separator could shift field boundaries and reuse another postback's signature.
        raise SkanFieldError(f"field {name} contains U+2063", name)
    return text


def _build_message(postback: Mapping[str, object], version: str) -> bytes:
    parts: list[str] = []
    for slot_name, fallbacks, optional in _SIGNED_SLOTS[version]:
        name, value = slot_name, postback.get(slot_name)
        if value is None:  # JSON null counts as absent
            name, value = _first_present(postback, fallbacks, slot_name)
            if value is None:
                if optional:  # an absent optional slot leaves no slot at all
                    continue
                raise SkanFieldError(f"missing signed field {slot_name}", slot_name)
        # Plain ASCII strings need no rendering (see _render): skipping the call is measurable here.
        parts.append(value if type(value) is str and value.isascii() else _render(name, value))
    return SEPARATOR.join(parts).encode("utf-8")


def _first_present(
    postback: Mapping[str, object], sources: tuple[tuple[str, str], ...], slot_name: str
) -> tuple[str, object | None]:
    for key, name in sources:
        value = postback.get(key)
        if value is not None:
            return name, value
    return slot_name, None


def signed_message(postback: Mapping[str, object]) -> bytes:
    """The exact bytes Apple signed for this postback; raises SkanFieldError if they cannot be built."""
    return _build_message(postback, _resolve_version(postback))


def missing_fields(postback: object) -> list[str]:
    """Mandatory fields of the postback's version that are absent or null (REQUIRED_FIELDS_BY_VERSION order).

    An unknown version only checks the version-independent fields: it is an invalid signature to record,
    not a malformed request. AdAttributionKit postbacks only need their ``jws-string``.
    """
    if not isinstance(postback, Mapping):
        return list(_ALWAYS_REQUIRED)
    if "jws-string" in postback:
        return [] if postback.get("jws-string") is not None else ["jws-string"]
    try:
        required = REQUIRED_FIELDS_BY_VERSION[_resolve_version(postback)]
    except SkanFieldError:
        required = _ALWAYS_REQUIRED
    return [name for name in required if _lookup(postback, name) is None]


def _invalid(version: str | None, reason: str) -> Verification:
    return Verification(valid=False, version=version, reason=reason)


def verify_postback(postback: object) -> Verification:
    """Check the postback's ``attribution-signature``. Never raises: every failure is a reason."""
    if not isinstance(postback, Mapping):
        return _invalid(None, f"postback is not a JSON object (got {type(postback).__name__})")
    if "jws-string" in postback:
        return _invalid(None, _AAK_REASON)
    try:
        version = _resolve_version(postback)
    except SkanFieldError as exc:
        return _invalid(None, exc.reason)
    try:
        message = _build_message(postback, version)
        signature = _signature_bytes(postback.get("attribution-signature"))
    except SkanFieldError as exc:
        return _invalid(version, exc.reason)
    try:
        _RULES[version].key.verify(signature, message, _ECDSA_SHA256)
    except InvalidSignature:
        return _invalid(version, _mismatch_reason(signature))
    return _VALID[version]


def _signature_bytes(signature_b64: object) -> bytes:
    if signature_b64 is None:
        raise SkanFieldError("missing attribution-signature", "attribution-signature")
    if not isinstance(signature_b64, str):
        raise SkanFieldError("signature is not a string", "attribution-signature")
    try:
        # validate=True: otherwise stray characters are silently dropped and garbage could decode.
        return base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise SkanFieldError("signature is not base64", "attribution-signature") from None


def _mismatch_reason(signature: bytes) -> str:
    # Parsed only after a failed check, to tell a malformed signature from a wrong one. A signature that
    # verifies is always strict DER (OpenSSL re-encodes it and rejects any difference), so the success
    # path can skip this parse without changing any result.
    try:
        decode_dss_signature(signature)
    except ValueError:
        return "signature is not DER"
    return "signature does not match"
