"""Normalise and SHA-256-hash the SDK event's ``user`` object at the ingest gateway.

Raw personal data never leaves the gateway: downstream topics only carry the hashes
returned by :func:`hash_user_data`, keyed by Meta Conversions API names (plus TikTok's
``ph_e164``).

For em, ph, fn, ln, ct, st, zp and country the normalised string is byte-for-byte what the
official Meta SDK (``facebook_business`` ``Normalize.normalize_field``) hashes, for every
input that SDK accepts; the unit tests check this against the installed SDK. Known SDK
quirks we deliberately do *not* copy:

* it hashes blank / fully-stripped values as sha256("") -- we omit them;
* it also passes through 32-hex (MD5-looking) values unhashed -- we only pass through
  64-hex (SHA-256) values, so e.g. a dash-less UUID external_id still gets hashed;
* it rejects phones containing letters, dots or slashes -- we strip every non-digit as
  Meta's CAPI docs say, and convert non-ASCII decimal digits (e.g. full-width) to ASCII
  where the SDK would hash them as-is.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from shared.errors import InputError

__all__ = [
    "hash_user_data",
    "normalise_city",
    "normalise_country",
    "normalise_date_of_birth",
    "normalise_email",
    "normalise_external_id",
    "normalise_gender",
    "normalise_name",
    "normalise_phone",
    "normalise_state",
    "normalise_zip",
    "sha256_hex",
    "user_json_schema",
]


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# Stricter than the SDK's ".+@.+\..+", which also accepts e.g. "john doe@x.com".
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# YYYYMMDD, or an RFC 3339 full-date optionally followed by a time part (which is ignored).
_DATES = (
    re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})"),
    re.compile(
        r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
        r"(?:[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2}))?"
    ),
)
# The SDK's location rule: drop ASCII digits, ".", "-", "(", ")" and whitespace. Other
# punctuation (apostrophes, commas) is kept, so "Coeur d'Alene" -> "coeurd'alene".
_LOCATION_DROP = frozenset("0123456789.-()")
# E.164 allows at most 15 digits; the SDK requires at least 7.
_PHONE_MIN_DIGITS, _PHONE_MAX_DIGITS = 7, 15


def sha256_hex(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 encoding of ``value``."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise ValueError("not a valid email address")
    return email


def normalise_phone(value: str) -> str:
    """Digits only, without leading zeros: the country code must already be included.

    This is what Meta hashes; TikTok's E.164 form is ``"+" + normalise_phone(value)``.
    """
    digits = "".join(str(unicodedata.decimal(ch)) for ch in value if ch.isdecimal()).lstrip("0")
    if not _PHONE_MIN_DIGITS <= len(digits) <= _PHONE_MAX_DIGITS:
        raise ValueError(
            f"must have {_PHONE_MIN_DIGITS}-{_PHONE_MAX_DIGITS} digits including the country code"
        )
    return digits


def normalise_name(value: str) -> str:
    # The SDK only trims and lowercases names: punctuation and accents are kept (hashed
    # as UTF-8) and no Unicode normalisation (NFC/NFD) is applied.
    return value.strip().lower()


def _normalise_location(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch not in _LOCATION_DROP and not ch.isspace())


def normalise_city(value: str) -> str:
    return _normalise_location(value)


def normalise_state(value: str) -> str:
    # Same rule as the SDK: callers should send the 2-letter code ("CA"); full names are
    # lowercased and hashed as-is rather than mapped, and will not match US state codes.
    return _normalise_location(value)


def normalise_zip(value: str) -> str:
    # Like the SDK, drop whitespace and keep everything before the first "-": that turns
    # US ZIP+4 "94025-1234" into "94025", but also truncates dashed non-US postcodes
    # (Polish "00-950" -> "00"); we keep that so hashes match Meta's own tooling.
    compact = "".join(ch for ch in value.lower() if not ch.isspace())
    return compact.partition("-")[0]


def normalise_country(value: str) -> str:
    code = "".join(ch for ch in value.lower() if "a" <= ch <= "z")
    # The SDK also checks the code against the ISO 3166-1 list (via pycountry); stdlib has
    # no such table, and an unknown 2-letter code merely fails to match, so we check shape.
    if len(code) != 2:
        raise ValueError("must be an ISO 3166-1 alpha-2 code such as 'us'")
    return code


def normalise_gender(value: str) -> str:
    gender = value.strip().lower()
    if gender in ("f", "female"):
        return "f"
    if gender in ("m", "male"):
        return "m"
    raise ValueError("must be 'f', 'm', 'female' or 'male'")


def normalise_date_of_birth(value: str) -> str:
    """YYYYMMDD from YYYY-MM-DD, YYYYMMDD or an RFC 3339 date-time.

    The date is taken as written, not converted to UTC: a birthday is a calendar date.
    """
    text = value.strip()
    match = _DATES[0].fullmatch(text) or _DATES[1].fullmatch(text)
    if match is None:
        raise ValueError("must be YYYY-MM-DD, YYYYMMDD or an RFC 3339 date-time")
    year, month, day = (int(part) for part in match.groups())
    try:
        return date(year, month, day).strftime("%Y%m%d")
    except ValueError:
        raise ValueError("is not a valid calendar date") from None


def normalise_external_id(value: str) -> str:
    # The SDK's UserData sends external_id verbatim (no trim, no lowercasing, no hashing),
    # so we hash the exact value the app sent to stay consistent with its other channels.
    return value


# user key -> (Meta key, normaliser)
_FIELDS: dict[str, tuple[str, Callable[[str], str]]] = {
    "email": ("em", normalise_email),
    "phone": ("ph", normalise_phone),
    "external_id": ("external_id", normalise_external_id),
    "first_name": ("fn", normalise_name),
    "last_name": ("ln", normalise_name),
    "city": ("ct", normalise_city),
    "state": ("st", normalise_state),
    "zip": ("zp", normalise_zip),
    "country": ("country", normalise_country),
    "gender": ("ge", normalise_gender),
    "date_of_birth": ("db", normalise_date_of_birth),
}
# A US ZIP as a JSON number has already lost its leading zeros (02134 -> 2134), so only
# phone numbers may be sent as integers.
_INT_OK = frozenset({"phone"})


def user_json_schema() -> dict[str, Any]:
    """The JSON schema of the SDK event's ``user`` object: these fields, each a string or null (a phone may be
    an integer too)."""
    def of(key: str) -> dict[str, Any]:
        text: dict[str, Any] = {"type": "string", "maxLength": 1000}
        return {"anyOf": [text, {"type": "integer"}, {"type": "null"}] if key in _INT_OK
                else [text, {"type": "null"}]}

    return {"anyOf": [{"type": "object", "properties": {key: of(key) for key in _FIELDS},
                       "additionalProperties": False}, {"type": "null"}],
            "description": "Personal data: normalised and SHA-256 hashed at the gateway; never stored raw. An "
                           "invalid value (not an email address, a phone without country code, ...) is a 400."}


def _as_text(key: str, value: object) -> str | None:
    if value is None:  # JSON null means "not provided"
        return None
    if isinstance(value, str):
        return value
    if key in _INT_OK and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"user.{key}", "must be a string")


def hash_user_data(user: Mapping[str, object]) -> dict[str, str]:
    """Hashes of the SDK event's ``user`` object, keyed by Meta CAPI names plus ``ph_e164``.

    Missing, null and blank values are omitted. A value that already is 64 hex characters
    is taken as a SHA-256 hash and passed through lowercased.

    :raises InputError: on an unknown key, a non-string value or an invalid value; ``field`` is e.g.
        ``"user.email"``.
    """
    hashed: dict[str, str] = {}
    for key, raw in user.items():
        spec = _FIELDS.get(key)
        if spec is None:
            raise InputError(f"user.{key}", "unknown field")
        text = raw if type(raw) is str else _as_text(key, raw)  # the common case without a call
        if text is None:
            continue
        candidate = text.strip()
        if not candidate:
            continue
        meta_key, normalise = spec

        if len(candidate) == 64 and _SHA256_HEX.fullmatch(candidate):  # the length test spares most a regex
            # For phones the pre-hash's input format (with or without "+") is unknown, so it
            # is only used as Meta's ph and no ph_e164 is derived from it.
            hashed[meta_key] = candidate.lower()
            continue

        try:
            normalised = normalise(text)
            if not normalised:  # e.g. a city that was only digits and punctuation
                continue
            hashed[meta_key] = sha256_hex(normalised)
            if meta_key == "ph":
                hashed["ph_e164"] = sha256_hex("+" + normalised)
        except UnicodeEncodeError:  # lone surrogates from a lax JSON decoder
            raise InputError(f"user.{key}", "is not valid Unicode text") from None
        except ValueError as exc:
            raise InputError(f"user.{key}", str(exc)) from None
    return hashed
