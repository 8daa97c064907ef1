"""What a network module declares. One module per network (services/forwarders/<name>.py) exports a
`NetworkSpec`; topics, routing, settings, the admin API, the CLI and attribution's click ids are all
derived from the registered specs (shared/networks/registry.py), so adding a network touches no
other file.

The request builder and the response classifier are pure: jobs and an integration in, an
`HttpRequest` out; an `HttpResponse` in, one outcome per job out. The forwarder engine
(shared/forwarding/forwarder.py) does the batching, the sending, the retries and the ledger.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.forwarding.model import ConnectionCheck, ForwardJob, HttpRequest, HttpResponse, Integration, Outcome

# Network names become topic names (forward.<name>), consumer groups and environment variables.
NAME = re.compile(r"[a-z][a-z0-9_]{1,30}")
# Click id types are stored lower case; a parameter name is matched without regard to case.
CLICK_ID_TYPE = re.compile(r"[a-z][a-z0-9_]{1,30}")

PreCheck = Callable[[ForwardJob, int], Outcome | None]
BuildRequest = Callable[[Sequence[ForwardJob], Integration, str, str | None], HttpRequest]
Classify = Callable[[HttpResponse, Sequence[ForwardJob]], list[Outcome]]
TestRequest = Callable[[Integration, str, str | None], HttpRequest]
TestResult = Callable[[HttpResponse], ConnectionCheck]
TokenRequest = Callable[[Integration, str], HttpRequest]
ParseToken = Callable[[HttpResponse], "tuple[str, float] | Outcome"]


class Feed(StrEnum):
    """What the fanout turns into this network's jobs."""

    CONVERSIONS = "conversions"  # attributed app events (events.attributed)
    SKAN = "skan"  # decoded SKAN postbacks (skan.decoded), one job per postback an ad network should get


@dataclass(frozen=True, slots=True)
class ClickId:
    """A click id the network issues and credits. `type` is what attribution stores as click_id_type;
    `params` are the names it travels under on tracking links, clicks and install referrers (Snap's
    `ScCid`), matched without regard to case. The type's own name always counts as one."""

    type: str
    params: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Lower-cased parameter names, the type's own first."""
        return tuple(dict.fromkeys(name.lower() for name in (self.type, *self.params)))


class Closed(BaseModel):
    """Unknown fields are refused, so a typo (`dataset-id`) is a 400 at PUT, not a dead letter per conversion
    later. Every settings and credentials model is one."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NoSettings(Closed):
    pass


class NoCredentials(Closed):
    pass


class AccessToken(Closed):
    """Credentials that are one access token (Meta, TikTok, Snapchat)."""

    access_token: SecretStr = Field(min_length=1, description="The network's access token")


class NetworkSettings(Closed):
    """Settings every network fed conversions has; a module's settings model extends it."""

    # A reinstall inside the app's re-attribution window is not a new install for the network, unless this.
    forward_reinstalls: bool = False


class UnattributedOptIn(NetworkSettings):
    """For networks that match on their own (advertising ids, hashed user data): they may opt in to
    conversions that no click of theirs was credited with."""

    forward_unattributed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class NetworkSpec:
    name: str
    title: str  # what the dashboard and the docs call it: "Meta Conversions API"
    # None: no base URL, each job carries its own (decoded SKAN postbacks). Overridden by APPREFER_<NAME>_BASE_URL.
    default_base_url: str | None
    batch_limit: int  # most jobs one request may carry
    settings: type[BaseModel]  # validated at PUT /admin/v1/apps/{app}/integrations/{name}
    credentials: type[BaseModel]  # write-only, encrypted at rest
    pre_check: PreCheck  # an outcome decided before any call (too old for the network...), else None
    build_request: BuildRequest  # the request delivering jobs, all of one app
    classify: Classify  # one outcome per job, in order
    test_request: TestRequest  # Test Connection: a dry run that records no conversion
    test_result: TestResult
    feed: Feed = Feed.CONVERSIONS
    click_ids: tuple[ClickId, ...] = ()  # in priority order, when an install carries several
    # apprefer event name -> the network's; an integration's event_map overrides it.
    default_event_names: Mapping[str, str] = field(default_factory=dict)
    # A settings field holding the event names instead (Google Ads: conversion_actions); without an entry
    # there, an event is not forwarded.
    event_names_setting: str | None = None
    # Token refresh, for networks whose access token is minted from a refresh token (Google Ads OAuth):
    # both or neither. APPREFER_<NAME>_TOKEN_URL overrides the default URL.
    token_request: TokenRequest | None = None
    parse_token: ParseToken | None = None
    default_token_url: str | None = None

    @property
    def env_prefix(self) -> str:
        return f"APPREFER_{self.name.upper()}_"

    @property
    def forwards_unattributed(self) -> bool:
        """Whether an integration may opt in to conversions without this network's click id."""
        return "forward_unattributed" in self.settings.model_fields

    def event_name(self, event_name: str, settings: Mapping[str, Any], event_map: Mapping[str, Any]) -> str | None:
        """The network's name for an apprefer event under an integration, or None: not forwarded."""
        mapped = event_map.get(event_name)
        if isinstance(mapped, str) and mapped:
            return mapped
        if self.event_names_setting is not None:
            names = settings.get(self.event_names_setting)
            chosen = names.get(event_name) if isinstance(names, Mapping) else None
            return chosen if isinstance(chosen, str) and chosen else None
        return self.default_event_names.get(event_name)

    def settings_schema(self) -> dict[str, Any]:
        return self.settings.model_json_schema()

    def credentials_schema(self) -> dict[str, Any]:
        return self.credentials.model_json_schema()
