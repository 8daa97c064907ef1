"""What an integration may hold: each network's settings and credentials models (from the registry),
plus the inbound sources that are configured like one (RevenueCat's webhook). Checked at PUT, so a
Meta integration without `dataset_id` is a 400 naming it, not a dead letter per conversion later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from shared.errors import InputError
from shared.networks.registry import UnknownNetwork, registry
from shared.networks.spec import NoSettings


class RevenueCatCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authorization: SecretStr = Field(min_length=1, max_length=1000,
                                     description="The Authorization header value set in RevenueCat's dashboard")


@dataclass(frozen=True, slots=True)
class Source:
    """An inbound integration: it sends to apprefer and receives nothing."""

    name: str
    title: str
    settings: type[BaseModel]
    credentials: type[BaseModel]


SOURCES = (Source("revenuecat", "RevenueCat webhooks", NoSettings, RevenueCatCredentials),)


class IntegrationInvalid(InputError):
    """A setting or credential the network's model refuses: answered 400 `invalid_integration`."""


def integration_names() -> tuple[str, ...]:
    return (*registry().names, *(source.name for source in SOURCES))


def models_of(network: str) -> tuple[type[BaseModel], type[BaseModel]]:
    """(settings model, credentials model); UnknownNetwork for a name that is neither a network nor a source."""
    for source in SOURCES:
        if source.name == network:
            return source.settings, source.credentials
    spec = registry().get(network)
    return spec.settings, spec.credentials


def checked(network: str, part: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` validated against the network's `part` ("settings" or "credentials") model; the fields as
    given (defaults are not written in), values normalised (whitespace stripped). IntegrationInvalid names
    the first wrong field, e.g. `settings.dataset_id`."""
    settings_model, credentials_model = models_of(network)
    model = settings_model if part == "settings" else credentials_model
    try:
        validated = model.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        # A secret's value never travels in an error: pydantic's message names the rule, not the input.
        raise IntegrationInvalid(".".join([part, *(str(p) for p in first["loc"])]), first["msg"]) from None
    return _plain(validated.model_dump(exclude_unset=True))


def _plain(value: Any) -> Any:
    """Secrets revealed for storage (they are encrypted at rest by the caller)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def described() -> list[dict[str, Any]]:
    """GET /admin/v1/networks: every network and source, with its settings and credentials JSON schemas."""
    networks = [{
        "network": spec.name, "title": spec.title, "kind": "forward", "feed": spec.feed.value,
        "click_id_types": [click_id.type for click_id in spec.click_ids],
        "click_id_params": sorted({name for click_id in spec.click_ids for name in (click_id.type, *click_id.params)}),
        "default_event_names": dict(spec.default_event_names), "event_names_setting": spec.event_names_setting,
        "forwards_unattributed": spec.forwards_unattributed, "batch_limit": spec.batch_limit,
        "base_url_variable": f"{spec.env_prefix}BASE_URL",
        "settings_schema": spec.settings_schema(), "credentials_schema": spec.credentials_schema(),
    } for spec in registry().networks]
    sources = [{
        "network": source.name, "title": source.title, "kind": "source",
        "settings_schema": source.settings.model_json_schema(),
        "credentials_schema": source.credentials.model_json_schema(),
    } for source in SOURCES]
    return networks + sources


__all__ = ["SOURCES", "IntegrationInvalid", "UnknownNetwork", "checked", "described", "integration_names",
           "models_of", "settings_table"]


def settings_table() -> str:
    """The markdown table of docs/architecture.md's "Integration settings" (a test keeps the two equal)."""
    rows = ["| network | settings (required in bold) | credentials (write-only, encrypted) |", "| --- | --- | --- |"]
    for name in integration_names():
        settings_model, credentials_model = models_of(name)
        rows.append(f"| `{name}` | {_fields(settings_model)} | {_fields(credentials_model)} |")
    return "\n".join(rows)


def _fields(model: type[BaseModel]) -> str:
    shown = [f"**`{name}`**" if field.is_required() else f"`{name}`" for name, field in model.model_fields.items()]
    return ", ".join(shown) or "none"
