"""SKAdNetwork postbacks as received: parse, merge redirect query parameters, validate. Pure (stdlib + orjson).

Both ingest paths use it: ``POST /v1/skan/postbacks`` (an ad network's enrich-and-forward POST, or the device
re-sending its body after a network's 307 redirect, with the campaign details as query parameters) and
``POST /.well-known/skadnetwork/report-attribution/`` (Apple's copy to the advertiser). The gateway answers
400 exactly when :func:`parse_postback` raises :class:`~shared.errors.InputError`, 200 otherwise (duplicates
included) unless the body is over its limit (413) or the source sent too many for an app id no app has (429).
The raw body is kept by the caller for audit; nothing here alters Apple's fields. For postbacks no app is
waiting for, :func:`summary` is what is kept and :class:`SourceRateLimiter` bounds how many a source may send.

Personal data in the enrichment (services/privacy/personal_data.py): a redirect's query parameter named like
personal data (``email``, ``phone``, ...) is kept hashed, and one whose value looks like an email address or a
phone number is dropped (counted and logged). The body, though, is stored as received (``raw_body``), so
there the same findings are a 400 naming the field: an ad network must send such fields hashed, or not at
all. Apple's own fields are never touched.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from services.privacy.personal_data import Findings, TooDeep, report_drops, scrub
from services.skan.verify import missing_fields
from shared.errors import InputError

__all__ = [
    "APPLE_FIELDS",
    "COARSE_VALUES",
    "ENRICHMENT_KEYS",
    "SOURCE_IDENTIFIER_ALIAS",
    "SUMMARY_FIELDS",
    "SourceRateLimiter",
    "enrichment",
    "flag",
    "parse_postback",
    "postback_timestamp_ms",
    "sequence_index",
    "source_identifier",
    "summary",
    "transaction_key",
]

# The guide's 4.0 examples spell it this way and networks copy them (see docs/skan.md).
SOURCE_IDENTIFIER_ALIAS = "source-identifer"

# Every key Apple's own postback can carry (SKAN 1.0 to 4.0, plus the AdAttributionKit JWS), and the alias.
# Anything else in a postback was added by someone on the way: an enrichment.
APPLE_FIELDS: frozenset[str] = frozenset(
    {
        "version",
        "ad-network-id",
        "campaign-id",
        "source-identifier",
        SOURCE_IDENTIFIER_ALIAS,
        "app-id",
        "transaction-id",
        "redownload",
        "source-app-id",
        "source-domain",
        "fidelity-type",
        "did-win",
        "conversion-value",
        "coarse-conversion-value",
        "postback-sequence-index",
        "attribution-signature",
        "jws-string",
    }
)

# The enrichment fields the guide documents (body fields of enrich-and-forward, query parameters of the
# redirect method). enrichment() returns these and any other non-Apple key (adjust-*, partner-*, ...).
ENRICHMENT_KEYS: tuple[str, ...] = (
    "ad-network-name",
    "ad-network-campaign-id",
    "ad-network-campaign-name",
    "ad-network-adset-id",
    "ad-network-adset-name",
    "ad-network-ad-id",
    "ad-network-ad-name",
    "ad-network-country-code",
    "ad-network-source-app-id",
    "ip",
    "timestamp",
)

COARSE_VALUES: tuple[str, ...] = ("low", "medium", "high")
MAX_SEQUENCE_INDEX = 2  # SKAN 4: windows 0, 1, 2
MAX_FINE_VALUE = 63


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sequence_index(postback: Mapping[str, Any]) -> int:
    """``postback-sequence-index`` as an int; absent or null (SKAN 1-3) is window 0.

    Raises InputError when the value is not 0, 1 or 2 (an int or a string of one digit).
    """
    raw = postback.get("postback-sequence-index")
    if raw is None:
        return 0
    if isinstance(raw, str) and raw.isdecimal() and len(raw) == 1:
        raw = int(raw)
    if not _is_int(raw) or not 0 <= raw <= MAX_SEQUENCE_INDEX:
        raise InputError("postback-sequence-index", "must be 0, 1 or 2")
    return int(raw)


def transaction_key(postback: Mapping[str, Any]) -> tuple[str, int]:
    """The uniqueness key: (transaction-id, postback-sequence-index or 0)."""
    tid = postback.get("transaction-id")
    if not isinstance(tid, str) or not tid.strip():
        raise InputError("transaction-id", "must be a non-empty string")
    return tid, sequence_index(postback)


def source_identifier(postback: Mapping[str, Any]) -> str | None:
    """SKAN 4 ``source-identifier`` (through its alias) as a string, leading zeros and length kept."""
    value = postback.get("source-identifier")
    if value is None:
        value = postback.get(SOURCE_IDENTIFIER_ALIAS)
    if value is None or isinstance(value, bool):
        return None
    return str(value)


def flag(value: object) -> bool | None:
    """A SKAN boolean (``redownload``, ``did-win``): JSON true/false, or "true"/"false"/1/0 from a forwarder."""
    if isinstance(value, bool):
        return value
    if _is_int(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


def postback_timestamp_ms(postback: Mapping[str, Any]) -> int | None:
    """The network's ``timestamp`` (when it got the postback from the device) in epoch ms, or None.

    The guide: a 10-digit epoch in seconds, optionally 13 digits in ms; sent as a string or a number.
    Anything else (empty, fractional, another length) is None, not an error: the field is optional.
    """
    raw = postback.get("timestamp")
    if _is_int(raw):
        text = str(raw)
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        return None
    if not text.isascii() or not text.isdecimal():
        return None
    if len(text) == 10:
        return int(text) * 1000
    if len(text) == 13:
        return int(text)
    return None


def enrichment(postback: Mapping[str, Any]) -> dict[str, Any]:
    """Every field that is not Apple's: the network's campaign details, ip, timestamp, other MMPs' keys."""
    return {name: value for name, value in postback.items() if name not in APPLE_FIELDS}


# The stored columns' widths (shared/db/models.py SkanPostback); Apple's own values are far shorter.
_LONGEST = {"transaction-id": 100, "app-id": 20, "ad-network-id": 200, "version": 10}


def _check_values(postback: Mapping[str, Any]) -> None:
    """Values the decoder and the uniqueness key depend on; a bad one is a malformed request, not a guess."""
    if postback.get("jws-string") is not None:
        return  # AdAttributionKit: everything is inside the JWS, routed apart
    transaction_key(postback)
    for name, longest in _LONGEST.items():
        value = postback.get(name)
        if value is not None and len(str(value)) > longest:
            raise InputError(name, f"longer than {longest} characters")
    fine = postback.get("conversion-value")
    if fine is not None and (not _is_int(fine) or not 0 <= fine <= MAX_FINE_VALUE):
        raise InputError("conversion-value", "must be an integer from 0 to 63, or null")
    coarse = postback.get("coarse-conversion-value")
    if coarse is not None and coarse not in COARSE_VALUES:
        raise InputError("coarse-conversion-value", "must be low, medium or high, or null")


def parse_postback(body: bytes, query: Mapping[str, str]) -> dict[str, Any]:
    """The postback to store and decode; raises InputError (answer 400) when it is not one.

    - ``body``: the raw request body (JSON object). Empty, malformed or not an object: field "body".
    - ``query``: the redirect method's query parameters. Each is added only when the body has no such key
      at all (a key present with null counts as present). Why never overwrite, signed field or not: the
      body is what the device sent, and Apple leaves ``conversion-value`` and ``coarse-conversion-value``
      unsigned, so a URL that could replace a body field could rewrite the value without breaking the
      signature. For the same reason a query parameter naming one of Apple's fields (APPLE_FIELDS) is
      ignored even when the body lacks it: a withheld (null/absent) value must never be filled in from a
      URL. Query values stay strings, as received.
    - ``source-identifer`` (the guide's spelling): ``source-identifier`` is set from it when the canonical
      key is absent or null; the alias key is kept, so the dict still holds everything the sender said and
      a conflicting pair stays visible (the canonical value wins, as in verify.py).
    - Then the version's mandatory fields (verify.missing_fields): the first missing or null one is the
      error's field. Last, values the de-duplication key and the decoder need: transaction-id a string,
      postback-sequence-index 0-2, conversion-value 0-63, coarse-conversion-value low/medium/high.

    Unknown keys are kept, never an error. The signature is not checked here (per-app policy, later).
    """
    if not body or not body.strip():
        raise InputError("body", "empty body")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError("body", f"malformed JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise InputError("body", f"must be a JSON object, got {type(parsed).__name__}")
    postback: dict[str, Any] = parsed

    if postback.get("source-identifier") is None and postback.get(SOURCE_IDENTIFIER_ALIAS) is not None:
        postback["source-identifier"] = postback[SOURCE_IDENTIFIER_ALIAS]

    from_body = set(postback)
    for name, value in query.items():
        if name in postback or name in APPLE_FIELDS:
            continue
        postback[name] = value
    _scrub_enrichment(postback, from_body)

    missing = missing_fields(postback)
    if missing:
        raise InputError(missing[0], "missing mandatory field")
    _check_values(postback)
    return postback


_BODY_PERSONAL_DATA = ("looks like personal data, and the postback body is kept as received: send such a field "
                       "hashed (SHA-256), or not at all")
_MISSING = object()


def _scrub_enrichment(postback: dict[str, Any], from_body: set[str]) -> None:
    """Hashes or drops personal data in the enrichment added from the query; refuses it in the body's."""
    findings = Findings()
    for name in [name for name in postback if name not in APPLE_FIELDS]:
        value = postback[name]
        found = Findings()
        try:
            scrubbed = scrub({name: value}, "", found)
        except TooDeep as exc:
            raise InputError("body", str(exc)) from None
        if scrubbed.get(name, _MISSING) == value and not found.dropped:
            continue  # nothing personal, or a field named like personal data that is hashed already
        if name in from_body:
            path, _ = (found.dropped or found.hashed)[0]
            raise InputError(path, _BODY_PERSONAL_DATA)
        findings.dropped += found.dropped
        findings.hashed += found.hashed
        if name in scrubbed:
            postback[name] = scrubbed[name]
        else:
            del postback[name]
    report_drops("skan", findings)


# What is kept of a postback for an app id no app has: enough to count and trace it, nothing a flood can grow.
SUMMARY_FIELDS: tuple[str, ...] = ("transaction-id", "postback-sequence-index", "app-id", "ad-network-id", "version")


def summary(postback: Mapping[str, Any]) -> dict[str, Any]:
    """The few fields of SUMMARY_FIELDS the postback has; no enrichment, no signature, no conversion value."""
    return {name: postback[name] for name in SUMMARY_FIELDS if name in postback}


class SourceRateLimiter:
    """A token bucket per source address, for postbacks no app is waiting for (the routes are unauthenticated).

    A source may send ``per_minute`` at once, then ``per_minute`` a minute. Memory is bounded: past
    ``max_sources`` buckets the source seen least recently is forgotten, and starts again with a full bucket,
    as a new address would.
    """

    def __init__(self, per_minute: float, max_sources: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or max_sources < 1:
            raise ValueError("per_minute must be positive and max_sources at least 1")
        self._capacity = max(1.0, per_minute)
        self._per_second = per_minute / 60
        self._max_sources = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (tokens, as of)

    def take(self, source: str) -> float:
        """0.0 when ``source`` may send one more (its token is taken), else the seconds until it may."""
        now = self._clock()
        tokens, as_of = self._buckets.pop(source, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - as_of) * self._per_second)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self._per_second
        self._buckets[source] = (tokens - 1 if wait == 0.0 else tokens, now)
        if len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
