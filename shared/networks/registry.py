"""The registered networks: every entry point of the group `apprefer.networks`, checked against the
contract of `NetworkSpec`.

apprefer registers its own networks the same way a separate package adds one, in pyproject.toml:

    [project.entry-points."apprefer.networks"]
    acme = "acme_apprefer.network:SPEC"

A spec that breaks the contract (a missing callable, a wrong arity, a click id another network
claims) is refused with the reason and logged; it costs only itself, the other networks load.
Entry points are read from installed metadata: after adding one, reinstall (`make setup`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from shared.networks.spec import CLICK_ID_TYPE, NAME, ClickId, Feed, NetworkSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "apprefer.networks"

# The spec's callables and how many positional arguments each takes.
_ARITY = {"pre_check": 2, "build_request": 4, "classify": 2, "test_request": 3, "test_result": 1,
          "token_request": 2, "parse_token": 1}
_OPTIONAL = frozenset({"token_request", "parse_token"})


class UnknownNetwork(ValueError):
    pass


class NetworkContractError(ValueError):
    """A network spec that does not satisfy the contract; the message lists every problem."""


def contract_problems(spec: object) -> list[str]:
    """What is wrong with `spec` on its own (an empty list: nothing)."""
    if isinstance(spec, _Unloadable):
        return [spec.why]
    if not isinstance(spec, NetworkSpec):
        return [f"is a {type(spec).__name__}, not a shared.networks.spec.NetworkSpec"]
    problems = []
    if not isinstance(spec.name, str) or not NAME.fullmatch(spec.name):
        problems.append(f"name {spec.name!r} must match {NAME.pattern}")
    if not isinstance(spec.batch_limit, int) or isinstance(spec.batch_limit, bool) or spec.batch_limit < 1:
        problems.append(f"batch_limit {spec.batch_limit!r} must be a positive integer")
    for url_field in ("default_base_url", "default_token_url"):
        url = getattr(spec, url_field)
        if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            problems.append(f"{url_field} {url!r} must be an http(s) URL or None")
    for model_field in ("settings", "credentials"):
        model = getattr(spec, model_field)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            problems.append(f"{model_field} must be a pydantic model class, not {model!r}")
    for name, arity in _ARITY.items():
        problems += _callable_problems(name, getattr(spec, name), arity, optional=name in _OPTIONAL)
    if (spec.token_request is None) != (spec.parse_token is None):
        problems.append("token_request and parse_token come together")
    if not isinstance(spec.feed, Feed):
        problems.append(f"feed {spec.feed!r} must be a Feed")
    problems += _click_id_problems(spec.click_ids)
    if spec.event_names_setting is not None and isinstance(spec.settings, type) and issubclass(
            spec.settings, BaseModel) and spec.event_names_setting not in spec.settings.model_fields:
        problems.append(f"event_names_setting {spec.event_names_setting!r} is not a field of its settings model")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in dict(spec.default_event_names).items()):
        problems.append("default_event_names must map event names to network event names")
    return problems


def _callable_problems(name: str, fn: Any, arity: int, optional: bool) -> list[str]:
    if fn is None:
        return [] if optional else [f"{name} is missing"]
    if not callable(fn):
        return [f"{name} is not callable"]
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []  # a builtin without a signature: trust it
    try:
        signature.bind(*([None] * arity))
    except TypeError:
        return [f"{name} must take {arity} positional argument{'s' if arity > 1 else ''}, it takes {signature}"]
    return []


def _click_id_problems(click_ids: Any) -> list[str]:
    if not isinstance(click_ids, tuple) or not all(isinstance(c, ClickId) for c in click_ids):
        return ["click_ids must be a tuple of ClickId"]
    return [f"click id type {c.type!r} must match {CLICK_ID_TYPE.pattern}" for c in click_ids
            if not isinstance(c.type, str) or not CLICK_ID_TYPE.fullmatch(c.type)]


class Registry:
    """The accepted networks, by name, and what was refused. Lookups are computed once: attribution and
    the gateway consult them per event."""

    def __init__(self, networks: Iterable[NetworkSpec], refused: Mapping[str, str]) -> None:
        self.networks: tuple[NetworkSpec, ...] = tuple(sorted(networks, key=lambda spec: spec.name))
        self.refused: Mapping[str, str] = dict(refused)  # entry point -> why it was refused
        self.names: tuple[str, ...] = tuple(spec.name for spec in self.networks)
        # Every click id with the network that issues it, in priority order (by network, then as declared).
        self.click_ids: tuple[tuple[ClickId, NetworkSpec], ...] = tuple(
            (click_id, spec) for spec in self.networks for click_id in spec.click_ids)
        self.click_id_types: tuple[str, ...] = tuple(click_id.type for click_id, _ in self.click_ids)
        self._network_of_type = {click_id.type: spec.name for click_id, spec in self.click_ids}
        self._type_of_param = {name: click_id.type for click_id, _ in self.click_ids for name in click_id.names}

    @classmethod
    def of(cls, candidates: Iterable[tuple[str, object]]) -> Registry:
        """Checks each (source, spec) and refuses what breaks the contract or clashes with an earlier spec."""
        accepted: dict[str, NetworkSpec] = {}
        claimed: dict[str, str] = {}  # lower-cased click id parameter -> network
        refused: dict[str, str] = {}
        for source, spec in sorted(candidates, key=lambda c: c[0]):
            problems = contract_problems(spec)
            if not problems and isinstance(spec, NetworkSpec):
                if spec.name in accepted:
                    problems.append(f"network {spec.name!r} is registered twice")
                else:
                    problems += [f"click id parameter {name!r} is {claimed[name]}'s"
                                 for click_id in spec.click_ids for name in click_id.names if name in claimed]
            if problems or not isinstance(spec, NetworkSpec):
                refused[source] = "; ".join(problems)
                log.error("network refused", extra={"entry_point": source, "problems": refused[source]})
                continue
            accepted[spec.name] = spec
            claimed.update((name, spec.name) for click_id in spec.click_ids for name in click_id.names)
        return cls(accepted.values(), refused)

    def get(self, name: str) -> NetworkSpec:
        for spec in self.networks:
            if spec.name == name:
                return spec
        refusal = next((why for source, why in self.refused.items() if source.split(" ")[0] == name), None)
        if refusal:
            raise UnknownNetwork(f"network {name!r} was refused: {refusal}")
        raise UnknownNetwork(f"unknown network {name!r}; known: {', '.join(self.names)}")

    def fed_by(self, feed: Feed) -> tuple[NetworkSpec, ...]:
        return tuple(spec for spec in self.networks if spec.feed is feed)

    def network_of_click_id_type(self, click_id_type: str) -> str | None:
        return self._network_of_type.get(click_id_type)

    def click_id_type_of(self, parameter: str) -> str | None:
        """The click id type a link, click or referrer parameter carries (`ScCid` -> `sccid`), or None."""
        return self._type_of_param.get(parameter.lower())


def load() -> Registry:
    candidates: list[tuple[str, object]] = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        source = f"{entry_point.name} ({entry_point.value})"
        try:
            spec = entry_point.load()
        except Exception as exc:  # a plugin that cannot even be imported costs only itself
            candidates.append((source, _Unloadable(f"cannot be loaded: {type(exc).__name__}: {exc}")))
            continue
        if isinstance(spec, NetworkSpec) and spec.name != entry_point.name:
            spec = _Unloadable(f"entry point {entry_point.name!r} names network {spec.name!r}")
        candidates.append((source, spec))
    loaded = Registry.of(candidates)
    if not loaded.networks:
        raise RuntimeError(f"no networks are registered under the entry-point group {ENTRY_POINT_GROUP!r}: "
                           "install apprefer (make setup, or pip install -e .) so its entry points exist")
    return loaded


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The registry of this process, loaded once."""
    return load()


class _Unloadable:
    """Stands in for an entry point that gave no spec, so the refusal carries why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return self.why
