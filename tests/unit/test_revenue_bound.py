"""The bound on revenue amounts: the apps column's default, the admin field, and RevenueCat's prices."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.admin.api.apps import AppIn
from services.domain.revenue import DEFAULT_MAX_REVENUE_AMOUNT, MAX_REVENUE_BOUND
from services.gateway.revenuecat import raw_event, webhook_event
from shared.db.models import App
from shared.errors import InputError

NOW_MS = 1_700_000_000_000


def test_the_columns_defaults_are_the_gateways() -> None:
    column = App.__table__.c.max_revenue_amount
    assert column.default is not None and column.default.arg == DEFAULT_MAX_REVENUE_AMOUNT
    assert column.server_default is not None
    assert float(str(column.server_default.arg)) == DEFAULT_MAX_REVENUE_AMOUNT
    assert column.nullable is False


def test_app_in_defaults_and_accepts_a_raised_bound() -> None:
    assert AppIn(name="a", platform="ios").max_revenue_amount == DEFAULT_MAX_REVENUE_AMOUNT
    assert AppIn(name="a", platform="ios", max_revenue_amount=5_000_000).max_revenue_amount == 5e6
    assert AppIn(name="a", platform="ios", max_revenue_amount=MAX_REVENUE_BOUND).max_revenue_amount == 1e12


@pytest.mark.parametrize("bound", [0, -1, 1e12 + 1, 1e308, float("inf"), float("nan"), "5000000", True, None])
def test_app_in_refuses_a_bound_out_of_range_or_not_a_number(bound: Any) -> None:
    with pytest.raises(ValidationError) as info:
        AppIn(name="a", platform="ios", max_revenue_amount=bound)
    assert info.value.errors()[0]["loc"] == ("max_revenue_amount",)


def rc_body(**fields: Any) -> dict[str, Any]:
    event = {"id": "evt-1", "type": "NON_RENEWING_PURCHASE", "event_timestamp_ms": NOW_MS - 5_000,
             "app_user_id": "u-1", "currency": "EUR", "price": 8.14, "price_in_purchased_currency": 7.99}
    event.update(fields)
    return {"event": event}


@pytest.mark.parametrize(("fields", "amount"), [
    ({"type": "CANCELLATION", "price": -8.14, "price_in_purchased_currency": -7.99}, -7.99),  # a refund
    ({"price": 1_000_000, "price_in_purchased_currency": 1_000_000}, 1_000_000),
    ({"price": -1_000_000, "price_in_purchased_currency": None, "currency": None}, -1_000_000),
    # an ordinary purchase in a currency of large units
    ({"price": 95.0, "price_in_purchased_currency": 1_499_000, "currency": "IDR"}, 1_499_000),
])
def test_revenuecat_prices_within_the_bounds_pass(fields: dict[str, Any], amount: float) -> None:
    record = raw_event(webhook_event(rc_body(**fields)), app_id="app_1", received_at_ms=NOW_MS)
    assert record["revenue_amount"] == amount


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"price": 1_000_001}, "event.price", "must be between -1000000 and 1000000"),
    ({"price": -2e6}, "event.price", "must be between -1000000 and 1000000"),
    ({"price": 1e308}, "event.price", "must be between -1000000 and 1000000"),
    ({"price": 2**70}, "event.price", "must be between -1000000 and 1000000"),
    ({"price_in_purchased_currency": 1e13}, "event.price_in_purchased_currency",
     "must be between -1000000000000 and 1000000000000"),
    ({"price_in_purchased_currency": -1e308}, "event.price_in_purchased_currency",
     "must be between -1000000000000 and 1000000000000"),
])
def test_revenuecat_prices_beyond_the_bounds_are_400(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        webhook_event(rc_body(**fields))
    assert (info.value.field, info.value.message) == (field, message)
