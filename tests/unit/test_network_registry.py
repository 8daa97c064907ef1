"""The network registry: every registered network satisfies the contract, and one that does not is refused
with the reason while the others load."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from services.forwarders import meta
from shared.networks.registry import ENTRY_POINT_GROUP, Registry, UnknownNetwork, contract_problems, load, registry
from shared.networks.spec import ClickId, NetworkSpec
from tests.support.plugins import PLUGINS, register


@pytest.mark.parametrize("spec", registry().networks, ids=lambda spec: spec.name)
def test_every_registered_network_satisfies_the_contract(spec: NetworkSpec) -> None:
    assert contract_problems(spec) == []
    assert spec.settings.model_json_schema()["type"] == "object"
    assert spec.credentials.model_json_schema()["type"] == "object"


def test_the_built_in_networks_are_registered_through_entry_points() -> None:
    assert {"google_ads", "meta", "skan_postback", "tiktok"} <= set(registry().names)
    assert registry().network_of_click_id_type("gbraid") == "google_ads"
    assert registry().click_id_type_of("FBCLID") == "fbclid"
    assert registry().click_id_type_of("utm_source") is None


def _broken(**changes: object) -> object:
    return dataclasses.replace(meta.SPEC, **changes)


def _two_args(a: object, b: object) -> None: ...


@pytest.mark.parametrize(("spec", "problem"), [
    ("meta", "is a str, not a shared.networks.spec.NetworkSpec"),
    (_broken(name="Meta Ads"), "name 'Meta Ads' must match"),
    (_broken(batch_limit=0), "batch_limit 0 must be a positive integer"),
    (_broken(classify=None), "classify is missing"),
    (_broken(build_request=_two_args), "build_request must take 4 positional arguments"),
    (_broken(settings=dict), "settings must be a pydantic model class"),
    (_broken(default_base_url="graph.facebook.com"), "default_base_url 'graph.facebook.com' must be an http(s) URL"),
    (_broken(token_request=_two_args), "token_request and parse_token come together"),
    (_broken(click_ids=(ClickId("Bad Id"),)), "click id type 'Bad Id' must match"),
    (_broken(event_names_setting="conversion_actions"), "event_names_setting 'conversion_actions' is not a field"),
])
def test_a_spec_that_breaks_the_contract_is_refused_and_the_others_load(spec: object, problem: str) -> None:
    loaded = Registry.of([("broken (tests:SPEC)", spec), ("tiktok (services.forwarders.tiktok:SPEC)",
                                                          registry().get("tiktok"))])
    assert loaded.names == ("tiktok",)
    assert problem in loaded.refused["broken (tests:SPEC)"]


def test_a_second_network_cannot_claim_a_click_id_parameter_or_a_name() -> None:
    clashing = _broken(name="meta_two", click_ids=(ClickId("fbc", ("FBCLID",)),))
    loaded = Registry.of([("meta", meta.SPEC), ("meta_two", clashing), ("meta_again", meta.SPEC)])
    assert loaded.names == ("meta",)
    assert loaded.refused["meta_two"] == "click id parameter 'fbclid' is meta's"
    assert loaded.refused["meta_again"] == "network 'meta' is registered twice"
    with pytest.raises(UnknownNetwork, match="'meta_two' was refused: click id parameter 'fbclid' is meta's"):
        loaded.get("meta_two")


def test_entry_points_are_discovered_and_a_broken_plugin_costs_only_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The example plugin, and a second one whose module does not import: both found through metadata.
    broken = tmp_path / "broken_plugin"
    (broken / "broken_network").mkdir(parents=True)
    (broken / "broken_network" / "__init__.py").write_text("raise ImportError('needs a library not installed')\n")
    (broken / "pyproject.toml").write_text(
        '[project]\nname = "broken-network"\nversion = "1.0"\n'
        f'[project.entry-points."{ENTRY_POINT_GROUP}"]\nbroken = "broken_network:SPEC"\n')
    for package in (PLUGINS / "acme", broken):
        for entry in register(package, tmp_path / "site"):
            monkeypatch.syspath_prepend(entry)
    monkeypatch.delitem(sys.modules, "acme_network", raising=False)
    loaded = load()
    assert "acme" in loaded.names and "meta" in loaded.names
    assert loaded.get("acme").click_ids == (ClickId("acmeclid", ("AcmeClid",)),)
    assert loaded.click_id_type_of("ACMECLID") == "acmeclid"
    assert loaded.refused == {"broken (broken_network:SPEC)": "cannot be loaded: ImportError: needs a library "
                                                              "not installed"}
