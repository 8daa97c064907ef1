"""Personal data outside ``user``: recognised by name and hashed, recognised by shape and dropped.

The gateway promises that raw personal data never reaches Kafka or the database. ``user`` is hashed by
:mod:`services.privacy.user_data`; this module covers every other field a client fills: the free-form
objects (an event's ``properties`` and extra top-level fields, its install referrer, a click's parameters,
RevenueCat subscriber attributes, SKAN enrichment) and the identifiers.

* **By name** (:func:`field_kind`): a field named like personal data -- ``email``, ``e-mail``, ``userEmail``,
  ``phone_number``, ``mobile``, ``firstName``, ``dob``, ... whatever the case and separators, at any depth --
  keeps its place, but its value becomes the SHA-256 of the value normalised as the networks ask (what
  ``user`` would hash; every string or number inside it when it is an object or a list). A value that does
  not normalise (an email without a domain) is hashed trimmed and lower-cased: it is still never kept raw.
  The first valid email, phone, first name, last name and date of birth found are also offered as user
  hashes (``em``, ``ph`` + ``ph_e164``, ``fn``, ``ln``, ``db``) so Meta and TikTok can match on them;
  whatever ``user`` itself holds wins (:func:`with_offered_hashes`).
* **By shape** (:func:`value_kind`): any other string in a free-form object -- and any key -- containing
  something that looks like an email address or a phone number is dropped, and reported by path and kind,
  never by value (:func:`report_drops`: a metric and a log line).
* **Identifiers** (:func:`identifier_problem`): device, advertising, click and event ids are refused when they
  look like an email address or a phone number: a hash would match nothing and a drop would lose the event,
  so the sender must fix it (a 400 naming the field).

Shapes, deliberately conservative so that ids, dates, versions and addresses survive: an email is
``local@domain.tld`` (an ``icon@2x.png`` asset name is not); a phone is ``+`` and 7-15 digits, a North
American ``(650) 555-0100`` / ``650-555-0100`` / ``650.555.0100``, or a number starting with ``00`` or ``0``
written in groups (``0044 20 7946 0958``, ``020 7946 0958``, ``06 12 34 56 78``). A bare run of digits is an
id, not a phone. Percent-encoded text is checked decoded too.

Pure rules, but for :func:`report_drops`, which counts and logs.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, unquote_plus

from services.domain.matching import peel_install_referrer
from services.privacy.user_data import (
    normalise_date_of_birth,
    normalise_email,
    normalise_name,
    normalise_phone,
)
from shared.metrics import PERSONAL_DATA_DROPPED

__all__ = [
    "DROPPED",
    "Findings",
    "TooDeep",
    "field_kind",
    "hash_field",
    "identifier_problem",
    "report_drops",
    "scrub",
    "scrub_referrer",
    "scrub_text",
    "value_kind",
    "with_offered_hashes",
]

log = logging.getLogger(__name__)

EMAIL, PHONE = "email", "phone"
FIRST_NAME, LAST_NAME, NAME, DATE_OF_BIRTH, ADDRESS = "first_name", "last_name", "name", "date_of_birth", "address"
MAX_DEPTH = 64  # objects and lists within one another; the gateway refuses deeper JSON anyway
REDACTED_KEY = "*"  # stands in a reported path for a key that itself looked like personal data

# --- by name ---------------------------------------------------------------------------------------

# A name's words, lower-cased, joined, from the first word or any later one: "user_e_mail" is tried as
# "useremail", "email", "mail". Plurals ("emails", "phone_numbers") count.
_TERMS: Final[dict[str, str]] = {
    **dict.fromkeys(("email", "emailaddress", "emailaddr"), EMAIL),
    **dict.fromkeys(("phone", "phonenumber", "phoneno", "phonenum", "telephone", "telephonenumber", "tel", "telno",
                     "mobile", "mobilenumber", "mobileno", "mobilephone", "cellphone", "cellnumber", "msisdn"), PHONE),
    **dict.fromkeys(("firstname", "givenname", "forename", "fname"), FIRST_NAME),
    **dict.fromkeys(("lastname", "familyname", "surname", "lname"), LAST_NAME),
    **dict.fromkeys(("fullname", "middlename", "customername", "contactname", "recipientname", "cardholdername",
                     "legalname", "realname"), NAME),
    **dict.fromkeys(("dateofbirth", "birthdate", "birthday", "dob"), DATE_OF_BIRTH),
    **dict.fromkeys(("street", "streetaddress", "addressline", "homeaddress", "postaladdress", "mailingaddress",
                     "billingaddress", "shippingaddress"), ADDRESS),
}
# Meta's own keys, as a whole name only ("em" inside "item" is no email).
_WHOLE_NAMES: Final[dict[str, str]] = {"em": EMAIL, "ph": PHONE, "fn": FIRST_NAME, "ln": LAST_NAME, "db": DATE_OF_BIRTH}
# "is_mobile", "has_email", "num_phones", "number_of_emails" say something about personal data, and hold none.
_FLAG_WORDS = frozenset({"is", "has", "num", "number", "count", "total"})
# camelCase and acronyms split ("userEMail" -> user, e, mail); anything not a letter or digit separates.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_CACHED_NAME_LENGTH = 64  # names are few and repeat; a long one (an attacker's) is not kept


def field_kind(name: str) -> str | None:
    """The kind of personal data a field named ``name`` holds (``email``, ``phone``, ``first_name``,
    ``last_name``, ``name``, ``date_of_birth``, ``address``), or None for any other name."""
    if len(name) <= _CACHED_NAME_LENGTH:
        return _cached_field_kind(name)
    return _field_kind(name)


@functools.lru_cache(maxsize=4096)
def _cached_field_kind(name: str) -> str | None:
    return _field_kind(name)


def _field_kind(name: str) -> str | None:
    words = [word.lower() for word in _WORD.findall(name)]
    while words and words[-1].isdigit():  # phone2, address_line_1
        words.pop()
    if not words or words[0] in _FLAG_WORDS:
        return None
    if len(words) == 1 and words[0] in _WHOLE_NAMES:
        return _WHOLE_NAMES[words[0]]
    for start in range(len(words)):
        joined = "".join(words[start:])
        kind = _TERMS.get(joined)
        if kind is None and joined.endswith("s"):
            kind = _TERMS.get(joined[:-1]) or (_TERMS.get(joined[:-2]) if joined.endswith("es") else None)
        if kind is not None:
            return kind
    return None


# --- by shape --------------------------------------------------------------------------------------

_LOCAL_CHAR = r"[\w.!#$%&'*+/=?^`{|}~-]"
# Starts only where a local part starts (the look-behind), so a long run of text is scanned once.
_EMAIL_SHAPE = re.compile(
    rf"(?<!{_LOCAL_CHAR}){_LOCAL_CHAR}+@(?![0-9]+x\.)(?:[\w-]+\.)+(?:[^\W\d_]{{2,}}|(?i:xn--)[\w-]+)")
_BEFORE = r"(?<![\w+.\-/@])"  # not glued to a word, a number, a path or an address
_AFTER = r"(?![\w+\-/]|\.[0-9])"
_SEVEN_DIGITS = re.compile(r"[0-9](?:[\s\-().]{0,2}[0-9]){6}")
# The phone shapes, each with its fewest and most digits, tried in one pass.
_PHONE_SHAPES: Final[tuple[tuple[str, int, int], ...]] = (
    (r"\+[\s(]{0,2}[0-9](?:[\s\-()]{0,2}[0-9]){6,14}", 7, 15),  # +44 20 7946 0958, +1 (650) 555-0100
    (r"(?:1[\s.\-]?)?\([0-9]{3}\)[\s.\-]?[0-9]{3}[\s.\-][0-9]{4}", 10, 11),  # (650) 555-0100
    (r"(?:1[\s.\-])?[0-9]{3}(?P<sep>[\s.\-])[0-9]{3}(?P=sep)[0-9]{4}", 10, 11),  # 650-555-0100, 650.555.0100
    (r"00[\s\-]?[1-9][0-9]{0,3}(?:[\s\-][0-9]{1,5}){2,6}", 9, 17),  # 0044 20 7946 0958
    (r"0[0-9]{1,4}(?:-[0-9]{4,8}|\s[0-9]{5,8}|(?:\s[0-9]{2,4}){2,4})", 9, 12),  # 020 7946 0958, 06 12 34 56 78
)
_PHONE = re.compile(_BEFORE + "(?:" + "|".join(f"(?P<shape{index}>{shape})" for index, (shape, _, _)
                                                 in enumerate(_PHONE_SHAPES)) + ")" + _AFTER)
_PHONE_DIGITS: Final[dict[str, tuple[int, int]]] = {
    f"shape{index}": (fewest, most) for index, (_, fewest, most) in enumerate(_PHONE_SHAPES)}
# Device models, user agents, event names and plans repeat from event to event: short text found clean is
# remembered. Only clean text: a personal value is not kept a moment longer than its request.
_CLEAN_TEXT: set[str] = set()
_CLEAN_TEXT_ENTRIES, _CLEAN_TEXT_LENGTH = 16384, 256


def value_kind(text: str) -> str | None:
    """``email`` or ``phone`` when ``text`` contains something shaped like one (checked decoded too when
    percent-encoded), else None."""
    if text in _CLEAN_TEXT:
        return None
    kind = _value_kind(text)
    if kind is None and len(text) <= _CLEAN_TEXT_LENGTH:
        if len(_CLEAN_TEXT) >= _CLEAN_TEXT_ENTRIES:
            _CLEAN_TEXT.clear()
        _CLEAN_TEXT.add(text)
    return kind


def _value_kind(text: str) -> str | None:
    kind = _shape_of(text)
    if kind is None and "%" in text:
        decoded = unquote(text)
        if decoded != text:
            kind = _shape_of(decoded)
    return kind


def _shape_of(text: str) -> str | None:
    if "@" in text and _EMAIL_SHAPE.search(text):
        return EMAIL
    if not _SEVEN_DIGITS.search(text):  # what every phone shape has: most text ends here, in one pass
        return None
    for match in _PHONE.finditer(text):
        fewest, most = _PHONE_DIGITS[match.lastgroup or ""]  # the shape's group is the last to close
        if fewest <= sum(ch.isdigit() for ch in match.group()) <= most:
            return PHONE
    return None


def identifier_problem(value: str) -> str | None:
    """Why ``value`` may not be an identifier (it looks like an email address or a phone number), or None."""
    kind = value_kind(value)
    if kind is None:
        return None
    what = "an email address" if kind == EMAIL else "a phone number"
    return f"looks like {what}: personal data is not an identifier here (send it under user, where it is hashed)"


# --- hashing ---------------------------------------------------------------------------------------

_NORMALISERS: Final[dict[str, Callable[[str], str]]] = {
    EMAIL: normalise_email, PHONE: normalise_phone, FIRST_NAME: normalise_name, LAST_NAME: normalise_name,
    DATE_OF_BIRTH: normalise_date_of_birth,
}
_META_KEYS: Final[dict[str, str]] = {EMAIL: "em", PHONE: "ph", FIRST_NAME: "fn", LAST_NAME: "ln", DATE_OF_BIRTH: "db"}
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_NUMERIC_KINDS = frozenset({PHONE, DATE_OF_BIRTH})  # 16505551212, 19900101


def _digest(text: str) -> str:
    # surrogatepass: a query string may carry lone surrogates; they are hashed, not refused.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def hash_field(kind: str, text: str) -> tuple[str, dict[str, str]]:
    """(the hash that replaces a ``kind`` field's value, the user hashes it yields).

    The hash is that of the value normalised as ``user`` would be (so equal to its ``em``/``ph``/... hash); a
    value the networks' rules refuse is hashed trimmed and lower-cased and yields no user hash; 64 hex
    characters are taken as a hash already, as in ``user``.
    """
    candidate = text.strip()
    if len(candidate) == 64 and _SHA256_HEX.fullmatch(candidate):
        hashed = candidate.lower()
        return hashed, ({_META_KEYS[kind]: hashed} if kind in _META_KEYS else {})
    normalise = _NORMALISERS.get(kind)
    if normalise is not None:
        try:
            normalised = normalise(text)
        except ValueError:  # not what the networks accept; still never kept raw
            normalised = ""
        if normalised:
            digest = _digest(normalised)
            hashes = {_META_KEYS[kind]: digest}
            if kind == PHONE:
                hashes["ph_e164"] = _digest("+" + normalised)
            return digest, hashes
    return _digest(candidate.lower()), {}


# --- scrubbing -------------------------------------------------------------------------------------


class TooDeep(ValueError):
    """Objects and lists nest deeper than MAX_DEPTH."""


class _Dropped:
    def __repr__(self) -> str:
        return "DROPPED"


DROPPED: Final = _Dropped()  # what scrub() returns for a value that is dropped as a whole


@dataclass(slots=True)
class Findings:
    """What scrubbing one record's input found: the user hashes offered, and (path, kind) of each field
    hashed by name and of each value dropped by shape."""

    user_hashes: dict[str, str] = field(default_factory=dict)
    hashed: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def offer(self, hashes: Mapping[str, str]) -> None:
        """The first of each kind stays; ph and ph_e164 come from the same phone."""
        if "ph" in hashes and "ph" in self.user_hashes:
            hashes = {key: value for key, value in hashes.items() if key not in ("ph", "ph_e164")}
        for key, value in hashes.items():
            self.user_hashes.setdefault(key, value)


def with_offered_hashes(user_hashes: Mapping[str, str], findings: Findings) -> dict[str, str]:
    """``user_hashes`` (from ``user``, which wins) completed with those offered by fields named like them."""
    merged = dict(user_hashes)
    for key, value in findings.user_hashes.items():
        if key in ("ph", "ph_e164") and "ph" in user_hashes:
            continue
        merged.setdefault(key, value)
    return merged


def scrub(value: Any, path: str, findings: Findings, kind: str | None = None, depth: int = 1) -> Any:
    """``value`` with fields named like personal data hashed and personal-looking strings dropped.

    Returns ``value`` itself when nothing changed, a new object or list otherwise, and DROPPED when
    ``value`` is a string to drop as a whole. ``kind``: the value sits in a field of that kind, so
    everything in it is hashed. Numbers are hashed only in a phone or date-of-birth field; booleans and nulls
    are kept.

    :raises TooDeep: when objects and lists nest more than MAX_DEPTH levels from ``value``.
    """
    if isinstance(value, str):
        if not value.strip():
            return value
        if kind is not None:
            return _hashed(kind, value, path, findings)
        found = value_kind(value)
        if found is None:
            return value
        findings.dropped.append((path, found))
        return DROPPED
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        if kind not in _NUMERIC_KINDS:  # a number is no email, name or street
            return value
        number = int(value) if isinstance(value, float) and value.is_integer() else value
        return _hashed(kind, str(number), path, findings)
    if depth > MAX_DEPTH:
        raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return _scrub_object(value, path, findings, kind, depth)
    if isinstance(value, list):
        return _scrub_list(value, path, findings, kind, depth)
    return value


def _scrub_object(value: dict[Any, Any], path: str, findings: Findings, kind: str | None,
                  depth: int) -> dict[Any, Any]:
    cleaned: dict[Any, Any] = {}
    changed = False
    for key, child in value.items():
        name = key if type(key) is str else str(key)
        key_shape = value_kind(name)
        if key_shape is not None:  # {"jane@example.com": 1}: the key is the personal data
            findings.dropped.append((_join(path, REDACTED_KEY), key_shape))
            changed = True
            continue
        child_kind = field_kind(name) or kind
        if child_kind is None and type(child) is str:  # the common case, without a call to scrub()
            shape = value_kind(child)
            if shape is None:
                cleaned[key] = child
            else:
                findings.dropped.append((_join(path, name), shape))
                changed = True
            continue
        scrubbed = scrub(child, _join(path, name), findings, child_kind, depth + 1)
        if scrubbed is DROPPED:
            changed = True
            continue
        changed = changed or scrubbed is not child
        cleaned[key] = scrubbed
    return cleaned if changed else value


def _scrub_list(value: list[Any], path: str, findings: Findings, kind: str | None, depth: int) -> list[Any]:
    cleaned: list[Any] = []
    changed = False
    for index, child in enumerate(value):
        scrubbed = scrub(child, f"{path}[{index}]", findings, kind, depth + 1)
        if scrubbed is DROPPED:
            changed = True
            continue
        changed = changed or scrubbed is not child
        cleaned.append(scrubbed)
    return cleaned if changed else value


def _hashed(kind: str, text: str, path: str, findings: Findings) -> str:
    hashed, user_hashes = hash_field(kind, text)
    findings.hashed.append((path, kind))
    findings.offer(user_hashes)
    return hashed


def scrub_text(text: str | None, path: str, findings: Findings) -> str | None:
    """A free-form string outside any object (a user agent, a campaign name): None when it is dropped."""
    if text is None:
        return None
    shape = value_kind(text)
    if shape is None:
        return text
    findings.dropped.append((path, shape))
    return None




def scrub_referrer(text: str, path: str, findings: Findings) -> str | None:
    """An install referrer (``utm_source=x&email=...``, perhaps percent-encoded again): parameters named like
    personal data get their value hashed, personal-looking ones are dropped. Unchanged, it is returned as
    sent; changed, with one level of encoding peeled. None when nothing of it is left."""
    peeled = peel_install_referrer(text)  # the layers the attribution consumer will read
    kept: list[str] = []
    changed = False
    for part in peeled.split("&"):
        raw_key, equals, raw_value = part.partition("=")
        key, value = unquote_plus(raw_key).strip(), unquote_plus(raw_value)
        key_shape = value_kind(key)
        if key_shape is not None:
            findings.dropped.append((_join(path, REDACTED_KEY), key_shape))
            changed = True
            continue
        kind = field_kind(key) if equals else None
        if kind is not None and value.strip():
            kept.append(f"{raw_key}={_hashed(kind, value, _join(path, key), findings)}")
            changed = True
            continue
        shape = value_kind(value) if equals else None
        if shape is not None:
            findings.dropped.append((_join(path, key), shape))
            changed = True
            continue
        kept.append(part)
    if not changed:
        return text
    return "&".join(kept) or None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- reporting -------------------------------------------------------------------------------------

_MAX_LOGGED_FIELDS = 20


def report_drops(entry: str, findings: Findings, **context: str | None) -> None:
    """Counts the dropped values (``apprefer_personal_data_dropped_total{entry, kind}``) and logs one warning
    naming their fields -- never a value -- with ``context`` (app_id, ...)."""
    if not findings.dropped:
        return
    for _, kind in findings.dropped:
        PERSONAL_DATA_DROPPED.labels(entry, kind).inc()
    fields = [path for path, _ in findings.dropped]
    log.warning("personal data dropped", extra={
        "entry": entry, **context, "dropped": len(fields), "fields": fields[:_MAX_LOGGED_FIELDS],
        "kinds": sorted({kind for _, kind in findings.dropped}),
    })
