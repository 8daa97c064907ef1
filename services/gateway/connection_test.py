"""Test Connection: a dry run against the network that records no conversion."""

from __future__ import annotations

import aiohttp

from services.forwarders.registry import NETWORK_MODULES, network_module
from shared.forwarding.http import TransportError, send_async
from shared.forwarding.model import ConnectionCheck, Integration
from shared.forwarding.redact import redact, secret_values
from shared.settings import Settings


async def test_connection(session: aiohttp.ClientSession, settings: Settings, integration: Integration
                          ) -> ConnectionCheck:
    """The network's dry run; the detail never carries a credential, even when an error echoes the URL."""
    check = await _dry_run(session, settings, integration)
    return ConnectionCheck(check.ok, redact(check.detail, secret_values(integration.credentials)))


async def _dry_run(session: aiohttp.ClientSession, settings: Settings, integration: Integration) -> ConnectionCheck:
    if integration.network not in NETWORK_MODULES:
        return ConnectionCheck(False, f"{integration.network} has no connection test")
    module = network_module(integration.network)
    total = settings.forward_timeout_seconds
    timeout = aiohttp.ClientTimeout(total=total, connect=min(settings.forward_connect_timeout_seconds, total))
    try:
        access_token = None
        token_request = getattr(module, "token_request", None)
        if token_request is not None:
            parsed = module.parse_token(  # type: ignore[attr-defined]
                await send_async(session, token_request(integration, settings.google_oauth_token_url), timeout)
            )
            if not isinstance(parsed, tuple):
                return ConnectionCheck(False, f"token refresh failed: {parsed.reason}")
            access_token = parsed[0]
        request = module.test_request(integration, settings.base_url(integration.network), access_token)
        return module.test_result(await send_async(session, request, timeout))
    except (KeyError, ValueError) as exc:
        return ConnectionCheck(False, f"integration is incomplete: {exc}")
    except TransportError as exc:
        return ConnectionCheck(False, f"{integration.network} did not answer: {exc}")
