"""The batch click lookup: one query for many installs, narrowed per install by ClickIndex."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from services.domain.matching import (
    AttributionRules,
    Click,
    ClickIndex,
    ClickSearch,
    InstallSignals,
    batch_click_search,
    click_id_types,
    click_search_keys,
    match_install,
    usable_ad_id,
)

CLICK_ID_TYPES = click_id_types()

NOW = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)
RULES = AttributionRules()
ZERO_ID = "00000000-0000-0000-0000-000000000000"


def make_click(key: str, **fields: object) -> Click:
    values: dict[str, object] = dict(network="meta", campaign=None, click_id_type=None, click_id=None, idfa=None,
                                     gaid=None, fingerprint=None, clicked_at=NOW - timedelta(hours=1))
    values.update(fields)
    return Click(click_key=key, **values)  # type: ignore[arg-type]


def search(**fields: object) -> ClickSearch:
    values: dict[str, object] = dict(click_key=None, network_click_ids=(), idfa=None, gaid=None, fingerprint=None,
                                     earliest=NOW - timedelta(days=7), latest=NOW)
    values.update(fields)
    return ClickSearch(**values)  # type: ignore[arg-type]


def keys(clicks: list[Click]) -> set[str]:
    return {c.click_key for c in clicks}


def test_candidates_share_a_key_with_the_search() -> None:
    index = ClickIndex([
        make_click("ck-1"),
        make_click("ck-2", click_id_type="fbclid", click_id="F1"),
        make_click("ck-3", click_id_type="gclid", click_id="F1"),  # same value, other network
        make_click("ck-4", idfa="idfa-1", fingerprint="fp-1"),
        make_click("ck-5", gaid="gaid-1"),
        make_click("ck-6", fingerprint="fp-2"),
    ])
    assert keys(index.candidates(search(click_key="ck-1"))) == {"ck-1"}
    assert keys(index.candidates(search(network_click_ids=(("fbclid", "F1"),)))) == {"ck-2"}
    assert keys(index.candidates(search(idfa="idfa-1", fingerprint="fp-1"))) == {"ck-4"}  # each click once
    assert keys(index.candidates(search(gaid="gaid-1", fingerprint="fp-2"))) == {"ck-5", "ck-6"}
    assert index.candidates(search(click_key="ck-9", idfa="IDFA-9")) == []
    assert ClickIndex().candidates(search(click_key="ck-1")) == []


def test_zeroed_advertising_ids_on_clicks_are_never_keys() -> None:
    index = ClickIndex([make_click("ck-1", idfa=ZERO_ID, gaid=" ")])
    assert index.candidates(search(idfa=ZERO_ID)) == []
    assert index.candidates(search(gaid=" ")) == []


def test_batch_search_is_the_union_of_the_installs_searches() -> None:
    first = search(click_key="ck-1", network_click_ids=(("fbclid", "F1"),), earliest=NOW - timedelta(days=7),
                   latest=NOW)
    second = search(idfa="idfa-1", gaid="gaid-1", fingerprint="fp-1", earliest=NOW - timedelta(days=1),
                    latest=NOW + timedelta(hours=2))
    combined = batch_click_search([first, second, search()])
    assert combined is not None
    assert combined.click_keys == {"ck-1"} and combined.click_ids == {"F1"}
    assert combined.idfas == {"idfa-1"} and combined.gaids == {"gaid-1"} and combined.fingerprints == {"fp-1"}
    assert combined.earliest == NOW - timedelta(days=7) and combined.latest == NOW + timedelta(hours=2)
    assert batch_click_search([search(), search()]) is None
    assert batch_click_search([]) is None


def _sql_like_lookup(clicks: list[Click], one: ClickSearch) -> list[Click]:
    """What the per-install query used to return: any key equal, clicked in the window."""
    def matches(c: Click) -> bool:
        return bool(
            (one.click_key and c.click_key == one.click_key)
            or any(c.click_id_type == t and c.click_id == v for t, v in one.network_click_ids)
            or (one.idfa and c.idfa == one.idfa) or (one.gaid and c.gaid == one.gaid)
            or (one.fingerprint and c.fingerprint == one.fingerprint))
    return [c for c in clicks if matches(c) and one.earliest <= c.clicked_at <= one.latest]


def test_index_attributes_exactly_like_one_query_per_install() -> None:
    # Clicks are stored with advertising ids normalised (click_input), as here.
    rng = random.Random(7)
    pick = lambda values: rng.choice(values)  # noqa: E731
    for _ in range(200):
        clicks = []
        for n in range(rng.randint(0, 25)):
            click_id_type = pick([None, *CLICK_ID_TYPES])
            clicks.append(make_click(
                f"ck-{n}", network=pick(["meta", "tiktok", None]),
                click_id_type=click_id_type, click_id=pick(["A", "B"]) if click_id_type else None,
                idfa=pick([None, "i1", "i2"]), gaid=pick([None, "g1"]), fingerprint=pick([None, "fp1", "fp2"]),
                clicked_at=NOW - timedelta(hours=rng.randint(-2, 24 * 9))))
        installs = []
        for _ in range(rng.randint(1, 6)):
            click_id_type = pick(CLICK_ID_TYPES)
            installs.append(InstallSignals(
                click_key=pick([None, "ck-1", "ck-3"]),
                network_click_ids={click_id_type: pick(["A", "B"])} if rng.random() < 0.5 else {},
                idfa=usable_ad_id(pick([None, "i1", "I2"])), gaid=pick([None, "g1"]),
                fingerprint=pick([None, "fp1", "fp2"]),
                installed_at=NOW - timedelta(hours=rng.randint(0, 48))))
        searches = [click_search_keys(signals, RULES) for signals in installs]
        combined = batch_click_search(searches)
        loaded = [] if combined is None else [
            c for c in clicks if combined.earliest <= c.clicked_at <= combined.latest and (
                c.click_key in combined.click_keys or c.click_id in combined.click_ids
                or c.idfa in combined.idfas or c.gaid in combined.gaids or c.fingerprint in combined.fingerprints)]
        index = ClickIndex(loaded)
        for signals, one in zip(installs, searches, strict=True):
            expected = match_install(signals, _sql_like_lookup(clicks, one), RULES)
            assert match_install(signals, index.candidates(one), RULES) == expected
