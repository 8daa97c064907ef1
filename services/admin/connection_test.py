"""Test Connection: a dry run against the network that records no conversion."""

from __future__ import annotations

import aiohttp

from shared.forwarding.http import TransportError, send_async
from shared.forwarding.model import ConnectionCheck, Integration
from shared.forwarding.redact import redact, secret_values
from shared.networks.registry import UnknownNetwork, registry
from shared.settings import Settings


async def test_connection(session: aiohttp.ClientSession, settings: Settings, integration: Integration
                          ) -> ConnectionCheck:
    """The network's dry run; the detail never carries a credential, even when an error echoes the URL."""
    check = await _dry_run(session, settings, integration)
    return ConnectionCheck(check.ok, redact(check.detail, secret_values(integration.credentials)))


async def _dry_run(session: aiohttp.ClientSession, settings: Settings, integration: Integration) -> ConnectionCheck:
    try:
        spec = registry().get(integration.network)
    except UnknownNetwork:
        return ConnectionCheck(False, f"{integration.network} has no connection test")
    total = settings.forward_timeout_seconds
    timeout = aiohttp.ClientTimeout(total=total, connect=min(settings.forward_connect_timeout_seconds, total))
    try:
        access_token = None
        if spec.token_request is not None and spec.parse_token is not None:
            parsed = spec.parse_token(
                await send_async(session, spec.token_request(integration, settings.token_url(spec.name)), timeout)
            )
            if not isinstance(parsed, tuple):
                return ConnectionCheck(False, f"token refresh failed: {getattr(parsed, 'reason', parsed)}")
            access_token = parsed[0]
        request = spec.test_request(integration, settings.base_url(spec.name), access_token)
        return spec.test_result(await send_async(session, request, timeout))
    except (KeyError, ValueError) as exc:
        return ConnectionCheck(False, f"integration is incomplete: {exc}")
    except TransportError as exc:
        return ConnectionCheck(False, f"{integration.network} did not answer: {exc}")
