from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest

from services.domain.matching import (
    CLOCK_SKEW,
    ORGANIC,
    Attribution,
    AttributionRules,
    Click,
    InstallSignals,
    PreviousInstall,
    click_id_types,
    click_search_keys,
    device_fingerprint,
    install_decision,
    install_signals,
    match_install,
    network_for_click_id_type,
    normalise_user_agent,
    parse_install_referrer,
    usable_ad_id,
)

INSTALLED_AT = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)
RULES = AttributionRules()
ZERO_ID = "00000000-0000-0000-0000-000000000000"
IDFA = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
FP = device_fingerprint("203.0.113.7", "Mozilla/5.0 (iPhone)")

CLICK_ID_TYPES = click_id_types()


def click(
    key: str = "ck-1",
    *,
    ago: timedelta = timedelta(hours=1),
    network: str | None = "meta",
    campaign: str | None = "spring",
    click_id_type: str | None = None,
    click_id: str | None = None,
    idfa: str | None = None,
    gaid: str | None = None,
    fingerprint: str | None = None,
) -> Click:
    return Click(
        click_key=key,
        network=network,
        campaign=campaign,
        click_id_type=click_id_type,
        click_id=click_id,
        idfa=idfa,
        gaid=gaid,
        fingerprint=fingerprint,
        clicked_at=INSTALLED_AT - ago,
    )


def signals(
    *,
    click_key: str | None = None,
    network_click_ids: dict[str, str] | None = None,
    idfa: str | None = None,
    gaid: str | None = None,
    fingerprint: str | None = None,
) -> InstallSignals:
    return InstallSignals(
        click_key=click_key,
        network_click_ids=network_click_ids or {},
        idfa=idfa,
        gaid=gaid,
        fingerprint=fingerprint,
        installed_at=INSTALLED_AT,
    )


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("click_id_type", "network"),
    [
        ("fbclid", "meta"),
        ("gclid", "google_ads"),
        ("gbraid", "google_ads"),
        ("wbraid", "google_ads"),
        ("ttclid", "tiktok"),
    ],
)
def test_network_for_click_id_type(click_id_type: str, network: str) -> None:
    assert network_for_click_id_type(click_id_type) == network


def test_network_for_click_id_type_covers_every_type_and_rejects_unknown() -> None:
    assert all(network_for_click_id_type(t) for t in CLICK_ID_TYPES)
    with pytest.raises(ValueError):
        network_for_click_id_type("msclkid")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (ZERO_ID, None),  # ATT denied / limit ad tracking
        (f"  {ZERO_ID}\n", None),
        ("00000000000000000000000000000000", None),  # undashed form of the same opt-out id
        (IDFA.upper(), IDFA),
        (f" {GAID} ", GAID),
    ],
)
def test_usable_ad_id(raw: str | None, expected: str | None) -> None:
    assert usable_ad_id(raw) == expected


def test_normalise_user_agent() -> None:
    assert normalise_user_agent(None) == ""
    assert (
        normalise_user_agent("  Mozilla/5.0   (iPhone;\tCPU OS 17_4)\n ")
        == "mozilla/5.0 (iphone; cpu os 17_4)"
    )


def test_device_fingerprint() -> None:
    expected = hashlib.sha256(b"203.0.113.7|mozilla/5.0 (iphone)").hexdigest()
    assert device_fingerprint(" 203.0.113.7 ", "Mozilla/5.0   (iPhone)") == expected
    # Same device seen through differently formatted user agents fingerprints identically.
    assert device_fingerprint("203.0.113.7", "MOZILLA/5.0 (IPHONE)") == expected
    assert device_fingerprint("203.0.113.8", "Mozilla/5.0 (iPhone)") != expected
    assert device_fingerprint("203.0.113.7", None) == hashlib.sha256(b"203.0.113.7|").hexdigest()
    assert device_fingerprint(None, "Mozilla/5.0") is None
    assert device_fingerprint("  ", "Mozilla/5.0") is None


# ---------------------------------------------------------------------------------------------
# Referrer parsing
# ---------------------------------------------------------------------------------------------


def test_parse_plain_referrer() -> None:
    raw = "utm_source=google-play&utm_medium=cpc&gclid=Cj0KCQ-aB_c&utm_campaign=spring%20sale"
    assert parse_install_referrer(raw) == {
        "utm_source": "google-play",
        "utm_medium": "cpc",
        "gclid": "Cj0KCQ-aB_c",
        "utm_campaign": "spring sale",
    }


def test_parse_double_encoded_referrer() -> None:
    assert parse_install_referrer("utm_source%3Dx%26gclid%3Dabc") == {"utm_source": "x", "gclid": "abc"}


def test_parse_double_encoded_referrer_keeps_encoded_value_characters() -> None:
    # A '+' or '&' inside a value is encoded in the inner layer; peeling the outer layer must not
    # turn it into a separator or a space.
    inner = urlencode({"gclid": "a+b&c=d", "utm_source": "google-play"})
    assert parse_install_referrer(quote(inner, safe="")) == {"gclid": "a+b&c=d", "utm_source": "google-play"}


def test_parse_triple_encoded_referrer() -> None:
    raw = quote(quote("gclid=abc&utm_source=x", safe=""), safe="")
    assert parse_install_referrer(raw) == {"gclid": "abc", "utm_source": "x"}


def test_parse_referrer_first_occurrence_wins_and_blank_values_kept() -> None:
    assert parse_install_referrer("?gclid=first&gclid=second&utm_term=") == {"gclid": "first", "utm_term": ""}


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "not a referrer", "%%%", "%3D%3D%zz", "&&&", "=value-without-key", "\x00\xff"],
)
def test_parse_garbage_referrer_is_empty(raw: str | None) -> None:
    assert parse_install_referrer(raw) == {}


def test_parse_referrer_never_raises_on_non_string() -> None:
    assert parse_install_referrer(123) == {}  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# install_signals
# ---------------------------------------------------------------------------------------------


def build(referrer: dict[str, str | None], **kwargs: str | None) -> InstallSignals:
    return install_signals(
        referrer,
        idfa=kwargs.get("idfa"),
        gaid=kwargs.get("gaid"),
        fingerprint=kwargs.get("fingerprint"),
        installed_at=INSTALLED_AT,
    )


def test_install_signals_from_explicit_fields() -> None:
    s = build({"click_id": "ck-9", "gclid": "Gc1", "ttclid": "Tt1", "utm_source": "ignored"})
    assert s.click_key == "ck-9"
    assert s.network_click_ids == {"gclid": "Gc1", "ttclid": "Tt1"}
    assert s.installed_at == INSTALLED_AT


def test_install_signals_from_parsed_install_referrer() -> None:
    s = build({"install_referrer": "utm_source=google-play&gclid=Gc2&click_id=ck-7&wbraid=Wb1"})
    # click_id inside the Play referrer is apprefer's own click key, not a network click id.
    assert s.click_key == "ck-7"
    assert s.network_click_ids == {"gclid": "Gc2", "wbraid": "Wb1"}


def test_install_signals_explicit_beats_parsed() -> None:
    s = build(
        {
            "click_id": "ck-explicit",
            "gclid": "Gc-explicit",
            "install_referrer": "click_id=ck-parsed&gclid=Gc-parsed&fbclid=Fb-parsed",
        }
    )
    assert s.click_key == "ck-explicit"
    assert s.network_click_ids == {"gclid": "Gc-explicit", "fbclid": "Fb-parsed"}


def test_install_signals_blank_explicit_values_fall_back_to_parsed() -> None:
    s = build(
        {"click_id": "  ", "gclid": "", "fbclid": None, "install_referrer": "gclid=Gc-parsed&click_id=ck-p"}
    )
    assert s.click_key == "ck-p"
    assert s.network_click_ids == {"gclid": "Gc-parsed"}


def test_install_signals_ignores_blanks_and_garbage() -> None:
    s = build({"click_id": "", "gclid": "   ", "install_referrer": "garbage", "fbclid": None})
    assert s.click_key is None
    assert s.network_click_ids == {}


def test_install_signals_preserves_click_id_case() -> None:
    s = build({"gclid": "CjAbC", "install_referrer": "fbclid=IwAR_XyZ"})
    assert s.network_click_ids == {"gclid": "CjAbC", "fbclid": "IwAR_XyZ"}


def test_install_signals_normalises_ad_ids() -> None:
    s = build({}, idfa=ZERO_ID, gaid=f" {GAID.upper()} ", fingerprint=FP)
    assert s.idfa is None
    assert s.gaid == GAID
    assert s.fingerprint == FP


def test_install_signals_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError):
        install_signals({}, idfa=None, gaid=None, fingerprint=None, installed_at=datetime(2024, 5, 10))


def test_install_signals_type_rejects_unknown_click_id_types() -> None:
    with pytest.raises(ValueError):
        InstallSignals(None, {"msclkid": "x"}, None, None, None, INSTALLED_AT)


# ---------------------------------------------------------------------------------------------
# click_search_keys
# ---------------------------------------------------------------------------------------------


def test_click_search_keys() -> None:
    s = signals(
        click_key="ck-1",
        network_click_ids={"ttclid": "T", "fbclid": "F"},
        idfa=IDFA,
        gaid=None,
        fingerprint=FP,
    )
    search = click_search_keys(s)
    assert search.click_key == "ck-1"
    assert search.network_click_ids == (("fbclid", "F"), ("ttclid", "T"))  # deterministic order
    assert search.idfa == IDFA
    assert search.gaid is None
    assert search.fingerprint == FP
    assert search.earliest == INSTALLED_AT - timedelta(days=7)
    assert search.latest == INSTALLED_AT + CLOCK_SKEW
    assert timedelta(seconds=60) == CLOCK_SKEW
    assert search.has_keys


def test_click_search_keys_uses_rules_lookback_and_reports_nothing_to_search() -> None:
    search = click_search_keys(signals(idfa=ZERO_ID), AttributionRules(lookback=timedelta(days=1)))
    assert search.earliest == INSTALLED_AT - timedelta(days=1)
    assert search.idfa is None
    assert not search.has_keys


# ---------------------------------------------------------------------------------------------
# match_install: tiers
# ---------------------------------------------------------------------------------------------


def test_no_candidates_and_no_click_ids_is_organic() -> None:
    assert match_install(signals(idfa=IDFA), [], RULES) is ORGANIC
    assert Attribution(attributed=False) == ORGANIC


def test_match_by_click_key() -> None:
    c = click("ck-1", network="meta", campaign="spring", click_id_type="fbclid", click_id="Fb1")
    result = match_install(signals(click_key="ck-1"), [c], RULES)
    assert result == Attribution(
        attributed=True,
        matched_by="click_id",
        network="meta",
        campaign="spring",
        click_id_type="fbclid",
        click_id="Fb1",
        click_key="ck-1",
        click_time=c.clicked_at,
    )


def test_match_by_network_click_id() -> None:
    c = click("ck-2", network="google_ads", click_id_type="gclid", click_id="Gc1")
    result = match_install(signals(network_click_ids={"gclid": "Gc1"}), [c], RULES)
    assert result.matched_by == "click_id"
    assert result.click_key == "ck-2"
    assert result.network == "google_ads"


def test_network_click_id_must_match_type_too() -> None:
    # The same value under a different click id type is a different click.
    c = click("ck-2", click_id_type="gbraid", click_id="Gc1")
    result = match_install(signals(network_click_ids={"gclid": "Gc1"}), [c], RULES)
    assert result.click_key is None  # fell through to click-id-only attribution
    assert result.click_id_type == "gclid"


def test_click_ids_are_case_sensitive() -> None:
    stored = click("ck-3", network="google_ads", campaign="c", click_id_type="gclid", click_id="CjAbC")
    result = match_install(signals(network_click_ids={"gclid": "cjabc"}), [stored], RULES)
    # No stored click matched; attribution comes from the referrer's own (unaltered) value.
    assert result.click_key is None
    assert result.campaign is None
    assert result.click_id == "cjabc"

    assert match_install(signals(click_key="CK-3"), [stored], RULES) is ORGANIC


def test_match_by_idfa() -> None:
    c = click("ck-4", idfa=IDFA)
    result = match_install(signals(idfa=IDFA), [c], RULES)
    assert result.matched_by == "device_id"
    assert result.click_key == "ck-4"


def test_match_by_gaid() -> None:
    c = click("ck-5", gaid=GAID)
    result = match_install(signals(gaid=GAID), [c], RULES)
    assert result.matched_by == "device_id"
    assert result.click_key == "ck-5"


def test_device_id_comparison_is_case_insensitive() -> None:
    # Ad ids are hex UUIDs whose case varies by source; install_signals lowercases them.
    c = click("ck-5", idfa=IDFA.upper())
    assert match_install(signals(idfa=IDFA), [c], RULES).matched_by == "device_id"


def test_zero_idfa_never_matches() -> None:
    c = click("ck-6", idfa=ZERO_ID, gaid=ZERO_ID)
    assert match_install(signals(idfa=ZERO_ID, gaid=ZERO_ID), [c], RULES) is ORGANIC
    s = build({}, idfa=ZERO_ID, gaid=ZERO_ID)
    assert match_install(s, [c], RULES) is ORGANIC


def test_missing_device_ids_never_match_each_other() -> None:
    c = click("ck-7", idfa=None, gaid=None, fingerprint=None)
    assert match_install(signals(), [c], RULES) is ORGANIC


def test_match_by_fingerprint() -> None:
    c = click("ck-8", ago=timedelta(hours=2), fingerprint=FP)
    result = match_install(signals(fingerprint=FP), [c], RULES)
    assert result.matched_by == "fingerprint"
    assert result.click_key == "ck-8"


def test_different_fingerprint_does_not_match() -> None:
    c = click("ck-8", fingerprint=device_fingerprint("198.51.100.1", "Mozilla/5.0 (iPhone)"))
    assert match_install(signals(fingerprint=FP), [c], RULES) is ORGANIC


# ---------------------------------------------------------------------------------------------
# match_install: precedence and ordering
# ---------------------------------------------------------------------------------------------


def test_click_id_beats_later_device_id_and_fingerprint() -> None:
    by_click = click("ck-a", ago=timedelta(hours=5), click_id_type="gclid", click_id="Gc1")
    by_device = click("ck-b", ago=timedelta(hours=1), idfa=IDFA)
    by_fp = click("ck-c", ago=timedelta(minutes=1), fingerprint=FP)
    s = signals(network_click_ids={"gclid": "Gc1"}, idfa=IDFA, fingerprint=FP)
    result = match_install(s, [by_fp, by_device, by_click], RULES)
    assert (result.matched_by, result.click_key) == ("click_id", "ck-a")


def test_device_id_beats_later_fingerprint() -> None:
    by_device = click("ck-b", ago=timedelta(hours=5), gaid=GAID)
    by_fp = click("ck-c", ago=timedelta(minutes=1), fingerprint=FP)
    result = match_install(signals(gaid=GAID, fingerprint=FP), [by_fp, by_device], RULES)
    assert (result.matched_by, result.click_key) == ("device_id", "ck-b")


def test_stored_click_beats_click_id_only_attribution() -> None:
    # A device-id match on a stored click carries campaign data; it wins over the bare referrer gclid.
    by_device = click("ck-b", network="meta", campaign="spring", idfa=IDFA)
    result = match_install(
        signals(network_click_ids={"gclid": "NoStoredClick"}, idfa=IDFA), [by_device], RULES
    )
    assert (result.matched_by, result.click_key, result.campaign) == ("device_id", "ck-b", "spring")


def test_click_matching_several_tiers_counts_in_the_strongest() -> None:
    # ck-old matches by click key AND idfa; it must compete in the click-id tier, where it is alone.
    both = click("ck-old", ago=timedelta(hours=3), idfa=IDFA)
    newer_device = click("ck-new", ago=timedelta(hours=1), idfa=IDFA)
    result = match_install(signals(click_key="ck-old", idfa=IDFA), [newer_device, both], RULES)
    assert (result.matched_by, result.click_key) == ("click_id", "ck-old")


@pytest.mark.parametrize("order", [1, -1])
def test_latest_click_wins_within_tier(order: int) -> None:
    older = click("ck-old", ago=timedelta(hours=6), idfa=IDFA, campaign="old")
    newer = click("ck-new", ago=timedelta(hours=2), idfa=IDFA, campaign="new")
    result = match_install(signals(idfa=IDFA), [older, newer][::order], RULES)
    assert (result.click_key, result.campaign) == ("ck-new", "new")


@pytest.mark.parametrize("order", [1, -1])
def test_latest_click_wins_within_click_id_tier(order: int) -> None:
    by_key = click("ck-key", ago=timedelta(hours=4))
    by_gclid = click("ck-gclid", ago=timedelta(hours=1), click_id_type="gclid", click_id="Gc1")
    s = signals(click_key="ck-key", network_click_ids={"gclid": "Gc1"})
    assert match_install(s, [by_key, by_gclid][::order], RULES).click_key == "ck-gclid"


@pytest.mark.parametrize("order", [1, -1])
def test_same_time_tie_breaks_on_larger_click_key(order: int) -> None:
    a = click("ck-a", ago=timedelta(hours=1), fingerprint=FP)
    b = click("ck-b", ago=timedelta(hours=1), fingerprint=FP)
    assert match_install(signals(fingerprint=FP), [a, b][::order], RULES).click_key == "ck-b"


def test_candidates_may_be_a_generator() -> None:
    clicks = (click(f"ck-{i}", ago=timedelta(hours=i), idfa=IDFA) for i in range(1, 4))
    assert match_install(signals(idfa=IDFA), clicks, RULES).click_key == "ck-1"


# ---------------------------------------------------------------------------------------------
# match_install: time windows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tier_kwargs",
    [
        {"click_key": "ck-1"},
        {"network_click_ids": {"ttclid": "Tt1"}},
        {"idfa": IDFA},
    ],
)

def test_lookback_boundary(tier_kwargs: dict[str, object]) -> None:
    def candidate(ago: timedelta) -> Click:
        return click("ck-1", ago=ago, click_id_type="ttclid", click_id="Tt1", idfa=IDFA)

    s = signals(**tier_kwargs)  # type: ignore[arg-type]
    assert match_install(s, [candidate(RULES.lookback)], RULES).click_key == "ck-1"
    assert match_install(s, [candidate(RULES.lookback + timedelta(seconds=1))], RULES).click_key is None


def test_lookback_is_configurable() -> None:
    rules = AttributionRules(lookback=timedelta(days=1))
    s = signals(idfa=IDFA)
    assert match_install(s, [click(ago=timedelta(days=1), idfa=IDFA)], rules).attributed
    assert match_install(s, [click(ago=timedelta(days=2), idfa=IDFA)], rules) is ORGANIC
    assert match_install(s, [click(ago=timedelta(days=2), idfa=IDFA)], RULES).attributed


def test_fingerprint_window_boundary() -> None:
    s = signals(fingerprint=FP)
    at_limit = click("ck-1", ago=RULES.fingerprint_window, fingerprint=FP)
    past = click("ck-2", ago=RULES.fingerprint_window + timedelta(seconds=1), fingerprint=FP)
    assert match_install(s, [at_limit], RULES).matched_by == "fingerprint"
    # Still inside the 7-day lookback, but fingerprints are too weak to trust that long.
    assert match_install(s, [past], RULES) is ORGANIC


def test_fingerprint_window_does_not_limit_device_ids() -> None:
    c = click("ck-1", ago=timedelta(days=3), idfa=IDFA, fingerprint=FP)
    assert match_install(signals(idfa=IDFA, fingerprint=FP), [c], RULES).matched_by == "device_id"


def test_expired_higher_tier_click_falls_through_to_lower_tier() -> None:
    stale_click_id = click("ck-a", ago=timedelta(days=8), click_id_type="gclid", click_id="Gc1")
    fresh_fp = click("ck-b", ago=timedelta(hours=1), fingerprint=FP)
    s = signals(click_key="ck-a", fingerprint=FP)
    result = match_install(s, [stale_click_id, fresh_fp], RULES)
    assert (result.matched_by, result.click_key) == ("fingerprint", "ck-b")


def test_click_within_clock_skew_after_install_matches() -> None:
    c = click("ck-1", ago=-CLOCK_SKEW, idfa=IDFA)
    assert match_install(signals(idfa=IDFA), [c], RULES).click_key == "ck-1"


def test_click_after_install_beyond_skew_is_ignored() -> None:
    c = click("ck-1", ago=-(CLOCK_SKEW + timedelta(seconds=1)), idfa=IDFA, fingerprint=FP)
    assert match_install(signals(click_key="ck-1", idfa=IDFA, fingerprint=FP), [c], RULES) is ORGANIC
    much_later = click("ck-2", ago=-timedelta(hours=1), idfa=IDFA)
    older = click("ck-3", ago=timedelta(hours=3), idfa=IDFA)
    # The later (post-install) click cannot win "latest" because it is not eligible at all.
    assert match_install(signals(idfa=IDFA), [much_later, older], RULES).click_key == "ck-3"


# ---------------------------------------------------------------------------------------------
# match_install: click-id-only attribution
# ---------------------------------------------------------------------------------------------


def test_click_id_only_attribution_from_play_referrer() -> None:
    s = build({"install_referrer": "utm_source=google-play&utm_medium=cpc&gclid=Cj0KCQ"})
    assert match_install(s, [], RULES) == Attribution(
        attributed=True,
        matched_by="click_id",
        network="google_ads",
        click_id_type="gclid",
        click_id="Cj0KCQ",
    )


def test_click_id_only_attribution_priority() -> None:
    s = signals(network_click_ids={"ttclid": "T", "wbraid": "W", "gclid": "G", "fbclid": "F"})
    result = match_install(s, [], RULES)
    # Networks in name order (the registry's), each network's click ids as it declares them.
    assert (result.network, result.click_id_type, result.click_id) == ("google_ads", "gclid", "G")

    s = signals(network_click_ids={"ttclid": "T", "wbraid": "W", "gbraid": "B"})
    result = match_install(s, [], RULES)
    assert (result.network, result.click_id_type, result.click_id) == ("google_ads", "gbraid", "B")

    s = signals(network_click_ids={"ttclid": "T"})
    assert match_install(s, [], RULES).network == "tiktok"


def test_unmatched_apprefer_click_key_alone_is_organic() -> None:
    # A click key without its stored click says nothing about the network: nothing to attribute.
    assert match_install(signals(click_key="ck-unknown"), [click("ck-other")], RULES) is ORGANIC


# ---------------------------------------------------------------------------------------------
# install_decision
# ---------------------------------------------------------------------------------------------


def test_install_decision_new() -> None:
    assert install_decision(None, "evt-1", INSTALLED_AT, RULES) == "new"


def test_install_decision_replay() -> None:
    # Same event reprocessed after a crash: even a "later" timestamp must not make it a reattribution.
    prev = PreviousInstall("evt-1", INSTALLED_AT - timedelta(days=365))
    assert install_decision(prev, "evt-1", INSTALLED_AT, RULES) == "replay"


def test_install_decision_reinstall_within_window_including_boundary() -> None:
    prev = PreviousInstall("evt-1", INSTALLED_AT - timedelta(days=10))
    assert install_decision(prev, "evt-2", INSTALLED_AT, RULES) == "reinstall"
    at_limit = PreviousInstall("evt-1", INSTALLED_AT - RULES.reattribution_window)
    assert install_decision(at_limit, "evt-2", INSTALLED_AT, RULES) == "reinstall"


def test_install_decision_reattribute_past_window() -> None:
    past = PreviousInstall("evt-1", INSTALLED_AT - RULES.reattribution_window - timedelta(seconds=1))
    assert install_decision(past, "evt-2", INSTALLED_AT, RULES) == "reattribute"


def test_install_decision_window_is_configurable() -> None:
    prev = PreviousInstall("evt-1", INSTALLED_AT - timedelta(days=10))
    rules = AttributionRules(reattribution_window=timedelta(days=7))
    assert install_decision(prev, "evt-2", INSTALLED_AT, rules) == "reattribute"


def test_install_decision_out_of_order_install_is_reinstall() -> None:
    prev = PreviousInstall("evt-1", INSTALLED_AT + timedelta(days=200))
    assert install_decision(prev, "evt-2", INSTALLED_AT, RULES) == "reinstall"


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2024, 5, 10, 12)
    with pytest.raises(ValueError):
        Click("ck", None, None, None, None, None, None, None, naive)
    with pytest.raises(ValueError):
        PreviousInstall("evt", naive)
