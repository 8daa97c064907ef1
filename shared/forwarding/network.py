"""The contract of one network module in services/forwarders/ (one module per network)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.forwarding.model import ConnectionCheck, ForwardJob, HttpRequest, HttpResponse, Integration, Outcome


class NetworkModule(Protocol):
    NETWORK: str  # "meta", "google_ads", "tiktok", ...
    BATCH_LIMIT: int  # most jobs one request may carry

    def pre_check(self, job: ForwardJob, now_ms: int) -> Outcome | None:
        """An outcome decided before any call (e.g. too old for the network), else None."""
        ...

    def build_request(self, jobs: Sequence[ForwardJob], integration: Integration, base_url: str,
                      access_token: str | None) -> HttpRequest:
        """The request delivering `jobs` (all of one app)."""
        ...

    def classify(self, response: HttpResponse, jobs: Sequence[ForwardJob]) -> list[Outcome]:
        """One outcome per job, in order, read from the network's answer."""
        ...

    def test_request(self, integration: Integration, base_url: str, access_token: str | None) -> HttpRequest:
        """A dry run that records no conversion (Test Connection)."""
        ...

    def test_result(self, response: HttpResponse) -> ConnectionCheck:
        ...


class TokenRefreshing(Protocol):
    """Networks whose access token is minted from a refresh token (Google Ads OAuth)."""

    def token_request(self, integration: Integration, token_url: str) -> HttpRequest:
        ...

    def parse_token(self, response: HttpResponse) -> tuple[str, float] | Outcome:
        """(access token, seconds it lives) or why none was given (invalid_grant is Permanent)."""
        ...
