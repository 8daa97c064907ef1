"""Pure attribution business rules: which stored click (if any) an install belongs to.

No I/O (the click ids come from the network registry, shared/networks/): the consumer loads candidate
clicks (see ``click_search_keys``) and calls ``match_install``; ``install_decision`` decides whether an
install is new, a replay, a reinstall or a re-attribution. All datetimes are tz-aware UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, unquote_plus

from shared.networks.registry import registry

__all__ = [
    "CLOCK_SKEW",
    "DECISION_NEW",
    "DECISION_REATTRIBUTE",
    "DECISION_REINSTALL",
    "DECISION_REPLAY",
    "DEFAULT_RULES",
    "MATCHED_BY_CLICK_ID",
    "MATCHED_BY_DEVICE_ID",
    "MATCHED_BY_FINGERPRINT",
    "ORGANIC",
    "Attribution",
    "AttributionRules",
    "BatchClickSearch",
    "Click",
    "ClickIndex",
    "ClickSearch",
    "InstallSignals",
    "PreviousInstall",
    "batch_click_search",
    "click_id_types",
    "click_search_keys",
    "device_fingerprint",
    "install_decision",
    "install_signals",
    "match_install",
    "network_for_click_id_type",
    "normalise_user_agent",
    "parse_install_referrer",
    "usable_ad_id",
]


# Device and server clocks disagree a little; a click stamped just after the install is still
# the click that caused it.
CLOCK_SKEW = timedelta(seconds=60)

MATCHED_BY_CLICK_ID = "click_id"
MATCHED_BY_DEVICE_ID = "device_id"
MATCHED_BY_FINGERPRINT = "fingerprint"

DECISION_NEW = "new"
DECISION_REPLAY = "replay"
DECISION_REINSTALL = "reinstall"
DECISION_REATTRIBUTE = "reattribute"

# Bounds the unwrapping of a multiply URL-encoded referrer so garbage cannot loop for long.
_MAX_REFERRER_DECODES = 3


def click_id_types() -> tuple[str, ...]:
    """Every registered network's click id types; also the priority order when an install carries several."""
    return registry().click_id_types


def network_for_click_id_type(click_id_type: str) -> str:
    """The ad network that issues ``click_id_type`` (e.g. ``"gclid"`` -> ``"google_ads"``)."""
    network = registry().network_of_click_id_type(click_id_type)
    if network is None:
        raise ValueError(f"unknown click id type: {click_id_type!r}")
    return network


def click_ids_in(parameters: Mapping[str, Any]) -> dict[str, str]:
    """{click id type: value} of the parameters named as a network names its click id, in any case
    (`ScCid` -> `sccid`); the first non-blank value of a type wins. Values keep their case."""
    found: dict[str, str] = {}
    for name, value in parameters.items():
        click_id_type = registry().click_id_type_of(name) if isinstance(name, str) else None
        cleaned = _clean(value) if isinstance(value, str) else None
        if click_id_type is not None and cleaned is not None and click_id_type not in found:
            found[click_id_type] = cleaned
    return found


def _require_aware(name: str, value: datetime) -> None:
    # Mixing naive and aware datetimes raises deep inside the comparisons (or, if every value is
    # naive, silently assumes a timezone); fail at construction with a clear message instead.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")


@dataclass(frozen=True, slots=True)
class Click:
    click_key: str  # apprefer's own id of the stored click (an SDK passes it back as `click_id`)
    network: str | None
    campaign: str | None
    click_id_type: str | None  # one of click_id_types() or None
    click_id: str | None  # the network's click id value: case-sensitive, never altered
    idfa: str | None
    gaid: str | None
    fingerprint: str | None
    clicked_at: datetime

    def __post_init__(self) -> None:
        _require_aware("Click.clicked_at", self.clicked_at)


@dataclass(frozen=True, slots=True)
class InstallSignals:
    click_key: str | None  # explicit apprefer click id from the referrer
    network_click_ids: dict[str, str]  # e.g. {"gclid": "..."}; only click_id_types() keys
    idfa: str | None
    gaid: str | None
    fingerprint: str | None
    installed_at: datetime

    def __post_init__(self) -> None:
        _require_aware("InstallSignals.installed_at", self.installed_at)
        unknown = set(self.network_click_ids) - set(click_id_types())
        if unknown:
            raise ValueError(f"unknown click id types: {sorted(unknown)}")


@dataclass(frozen=True, slots=True)
class AttributionRules:
    lookback: timedelta = timedelta(days=7)
    fingerprint_window: timedelta = timedelta(hours=24)
    reattribution_window: timedelta = timedelta(days=90)


DEFAULT_RULES = AttributionRules()


@dataclass(frozen=True, slots=True)
class Attribution:
    attributed: bool
    matched_by: str | None = None  # "click_id" | "device_id" | "fingerprint"
    network: str | None = None
    campaign: str | None = None
    click_id_type: str | None = None
    click_id: str | None = None
    click_key: str | None = None
    click_time: datetime | None = None


ORGANIC = Attribution(attributed=False)


@dataclass(frozen=True, slots=True)
class ClickSearch:
    """What the DB layer should load: clicks matching ANY key, with clicked_at in [earliest, latest]."""

    click_key: str | None
    network_click_ids: tuple[tuple[str, str], ...]  # (click_id_type, click_id), click_id_types() order
    idfa: str | None
    gaid: str | None
    fingerprint: str | None
    earliest: datetime
    latest: datetime

    @property
    def has_keys(self) -> bool:
        """False when no click could possibly match, so the DB query can be skipped."""
        return bool(self.click_key or self.network_click_ids or self.idfa or self.gaid or self.fingerprint)


@dataclass(frozen=True, slots=True)
class PreviousInstall:
    event_id: str
    installed_at: datetime

    def __post_init__(self) -> None:
        _require_aware("PreviousInstall.installed_at", self.installed_at)


# --------------------------------------------------------------------------------------------
# Signal extraction
# --------------------------------------------------------------------------------------------


def peel_install_referrer(raw: str) -> str:
    """The referrer's query text: a fully re-encoded referrer has no literal '=' but an encoded one, so
    layers are peeled until the query structure shows. A plain referrer always has a literal '=' and is
    left alone."""
    text = raw.strip().lstrip("?")
    for _ in range(_MAX_REFERRER_DECODES):
        if "=" in text:
            break
        decoded = unquote(text).strip().lstrip("?")
        if decoded == text:
            break
        text = decoded
    return text


def parse_install_referrer(raw: str | None) -> dict[str, str]:
    """Parse a Google Play install referrer (URL query form, possibly URL-encoded again).

    Returns every ``key=value`` pair with decoded values (first occurrence of a key wins).
    Never raises: anything unparseable yields ``{}``.
    """
    if not isinstance(raw, str):
        return {}
    try:
        text = peel_install_referrer(raw)
        result: dict[str, str] = {}
        for part in text.split("&"):
            # Pairs without '=' are noise (or the whole string is garbage), not keys.
            if "=" not in part:
                continue
            raw_key, raw_value = part.split("=", 1)
            key = unquote_plus(raw_key).strip()
            if key and key not in result:
                result[key] = unquote_plus(raw_value)
        return result
    except Exception:  # the referrer is attacker-controlled input: never fail the install
        return {}


def _clean(value: str | None) -> str | None:
    """Strip surrounding whitespace; blank -> None. Case is preserved (click ids are case-sensitive)."""
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def usable_ad_id(value: str | None) -> str | None:
    """A normalised (lowercase) IDFA/GAID, or None when blank or the all-zero opted-out id.

    iOS reports 00000000-0000-0000-0000-000000000000 when ATT is denied, Android under limit ad
    tracking: millions of devices share it, so matching on it would be wrong, not merely weak.
    """
    cleaned = _clean(value)
    if cleaned is None:
        return None
    lowered = cleaned.lower()
    # Also catch the undashed form some SDKs report.
    if set(lowered.replace("-", "")) == {"0"}:
        return None
    return lowered


def install_signals(
    referrer: Mapping[str, str | None],
    *,
    idfa: str | None,
    gaid: str | None,
    fingerprint: str | None,
    installed_at: datetime,
) -> InstallSignals:
    """Collect everything an install carries that can tie it to a click.

    ``referrer`` may hold ``click_id`` (apprefer's click key), network click ids and the raw Play
    ``install_referrer``; explicit fields win over values parsed out of ``install_referrer``.
    """
    parsed = parse_install_referrer(referrer.get("install_referrer"))

    def pick(key: str) -> str | None:
        explicit = _clean(referrer.get(key))
        return explicit if explicit is not None else _clean(parsed.get(key))

    explicit, in_referrer = click_ids_in(referrer), click_ids_in(parsed)
    network_click_ids = {t: explicit.get(t) or in_referrer[t] for t in click_id_types()
                         if t in explicit or t in in_referrer}

    return InstallSignals(
        click_key=pick("click_id"),
        network_click_ids=network_click_ids,
        idfa=usable_ad_id(idfa),
        gaid=usable_ad_id(gaid),
        fingerprint=_clean(fingerprint),
        installed_at=installed_at,
    )


def normalise_user_agent(user_agent: str | None) -> str:
    """Lowercase, whitespace-collapsed user agent ('' when missing)."""
    if not user_agent:
        return ""
    return " ".join(user_agent.lower().split())


def device_fingerprint(ip: str | None, user_agent: str | None) -> str | None:
    """sha256 hex of ``ip|normalised user agent``; None without an IP (it carries most of the signal)."""
    if ip is None or not ip.strip():
        return None
    material = f"{ip.strip()}|{normalise_user_agent(user_agent)}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def click_search_keys(signals: InstallSignals, rules: AttributionRules = DEFAULT_RULES) -> ClickSearch:
    """The lookup the DB layer performs before calling ``match_install`` with the results."""
    return ClickSearch(
        click_key=signals.click_key,
        network_click_ids=tuple(
            (t, signals.network_click_ids[t]) for t in click_id_types() if t in signals.network_click_ids
        ),
        idfa=usable_ad_id(signals.idfa),
        gaid=usable_ad_id(signals.gaid),
        fingerprint=signals.fingerprint,
        earliest=signals.installed_at - rules.lookback,
        latest=signals.installed_at + CLOCK_SKEW,
    )


def _search_index_keys(search: ClickSearch) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [("click_id", t, v) for t, v in search.network_click_ids]
    for kind, value in (("click_key", search.click_key), ("idfa", search.idfa), ("gaid", search.gaid),
                        ("fingerprint", search.fingerprint)):
        if value:
            keys.append((kind, value))
    return keys


def _click_index_keys(click: Click) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [("click_key", click.click_key)]
    if click.click_id_type and click.click_id:
        keys.append(("click_id", click.click_id_type, click.click_id))
    for kind, value in (("idfa", usable_ad_id(click.idfa)), ("gaid", usable_ad_id(click.gaid)),
                        ("fingerprint", click.fingerprint)):
        if value:
            keys.append((kind, value))
    return keys


@dataclass(frozen=True, slots=True)
class BatchClickSearch:
    """One DB lookup for a batch of installs: clicks matching ANY of the keys, clicked in
    [earliest, latest]. A superset of each install's own search; ``ClickIndex`` narrows it."""

    click_keys: frozenset[str]
    click_ids: frozenset[str]  # values only: the type is checked by the index
    idfas: frozenset[str]
    gaids: frozenset[str]
    fingerprints: frozenset[str]
    earliest: datetime
    latest: datetime


def batch_click_search(searches: Iterable[ClickSearch]) -> BatchClickSearch | None:
    """The union of several installs' searches; None when none of them has a key."""
    with_keys = [s for s in searches if s.has_keys]
    if not with_keys:
        return None
    return BatchClickSearch(
        click_keys=frozenset(s.click_key for s in with_keys if s.click_key),
        click_ids=frozenset(v for s in with_keys for _, v in s.network_click_ids),
        idfas=frozenset(s.idfa for s in with_keys if s.idfa),
        gaids=frozenset(s.gaid for s in with_keys if s.gaid),
        fingerprints=frozenset(s.fingerprint for s in with_keys if s.fingerprint),
        earliest=min(s.earliest for s in with_keys),
        latest=max(s.latest for s in with_keys),
    )


class ClickIndex:
    """Clicks loaded once for a batch, looked up per install by the keys it can match on.

    ``candidates`` returns every loaded click sharing a key with the search (unordered, each once);
    ``match_install`` applies the time windows and the tiers.
    """

    def __init__(self, clicks: Iterable[Click] = ()) -> None:
        self._by_key: dict[tuple[str, ...], list[Click]] = {}
        for click in clicks:
            for key in _click_index_keys(click):
                self._by_key.setdefault(key, []).append(click)

    def candidates(self, search: ClickSearch) -> list[Click]:
        found: dict[str, Click] = {}
        for key in _search_index_keys(search):
            for click in self._by_key.get(key, ()):
                found[click.click_key] = click
        return list(found.values())


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tiers:
    click_id: list[Click] = field(default_factory=list)
    device_id: list[Click] = field(default_factory=list)
    fingerprint: list[Click] = field(default_factory=list)


def _latest(clicks: list[Click]) -> Click:
    # Latest click wins (last-touch); the click_key tie-break keeps the choice independent of the
    # order the DB happened to return rows in.
    return max(clicks, key=lambda c: (c.clicked_at, c.click_key))


def _from_click(click: Click, matched_by: str) -> Attribution:
    return Attribution(
        attributed=True,
        matched_by=matched_by,
        network=click.network,
        campaign=click.campaign,
        click_id_type=click.click_id_type,
        click_id=click.click_id,
        click_key=click.click_key,
        click_time=click.clicked_at,
    )


def match_install(
    signals: InstallSignals, candidates: Iterable[Click], rules: AttributionRules
) -> Attribution:
    """Attribute an install to the best candidate click, or ORGANIC.

    Tiers, strongest first: click id > device id > fingerprint. The first tier with any eligible
    click wins even if a weaker tier has a later click; inside a tier the latest click wins.
    """
    installed_at = signals.installed_at
    network_pairs = set(signals.network_click_ids.items())
    idfa = usable_ad_id(signals.idfa)
    gaid = usable_ad_id(signals.gaid)
    fingerprint = signals.fingerprint or None
    tiers = _Tiers()

    for click in candidates:
        age = installed_at - click.clicked_at
        if age < -CLOCK_SKEW or age > rules.lookback:
            continue
        if (signals.click_key is not None and click.click_key == signals.click_key) or (
            click.click_id_type is not None
            and click.click_id is not None
            and (click.click_id_type, click.click_id) in network_pairs
        ):
            tiers.click_id.append(click)
        # Normalise the click side too: a zero/blank id stored on a click must never match.
        elif (idfa is not None and usable_ad_id(click.idfa) == idfa) or (
            gaid is not None and usable_ad_id(click.gaid) == gaid
        ):
            tiers.device_id.append(click)
        elif fingerprint is not None and click.fingerprint == fingerprint and age <= rules.fingerprint_window:
            tiers.fingerprint.append(click)

    if tiers.click_id:
        return _from_click(_latest(tiers.click_id), MATCHED_BY_CLICK_ID)
    if tiers.device_id:
        return _from_click(_latest(tiers.device_id), MATCHED_BY_DEVICE_ID)
    if tiers.fingerprint:
        return _from_click(_latest(tiers.fingerprint), MATCHED_BY_FINGERPRINT)

    # A network click id with no stored click (e.g. a gclid straight from the Play referrer) still
    # proves a paid click; attribute to its network without campaign details.
    for click_id_type in click_id_types():
        value = signals.network_click_ids.get(click_id_type)
        if value:
            return Attribution(
                attributed=True,
                matched_by=MATCHED_BY_CLICK_ID,
                network=network_for_click_id_type(click_id_type),
                click_id_type=click_id_type,
                click_id=value,
            )
    return ORGANIC


def install_decision(
    previous: PreviousInstall | None, event_id: str, installed_at: datetime, rules: AttributionRules
) -> str:
    """How to treat an install given the device's previously recorded install (if any).

    "new": first install; "replay": the same event processed again (re-emit stored attribution);
    "reinstall": within the re-attribution window (keep the original attribution);
    "reattribute": after the window (a new install, matched afresh).
    """
    if previous is None:
        return DECISION_NEW
    if previous.event_id == event_id:
        return DECISION_REPLAY
    # An out-of-order (earlier) install yields a negative gap and is treated as a reinstall.
    if installed_at - previous.installed_at <= rules.reattribution_window:
        return DECISION_REINSTALL
    return DECISION_REATTRIBUTE
