"""App Store ids as the admin API takes them: a number, its digits, or "id<digits>" as App Store URLs spell
it; stored as the digits (what a SKAN postback's app-id reads as), anything else refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.admin.api.apps import AppIn, AppPatch


@pytest.mark.parametrize("given", [525463029, "525463029", "id525463029", " id525463029 ", " 525463029"])
def test_the_forms_accepted_are_stored_as_digits(given: Any) -> None:
    assert AppIn(name="a", platform="ios", apple_app_id=given).apple_app_id == "525463029"
    assert AppPatch.model_validate({"apple_app_id": given}).apple_app_id == "525463029"


def test_twenty_digits_at_most_and_null_clears() -> None:
    assert AppIn(name="a", platform="ios", apple_app_id=10**19).apple_app_id == "1" + "0" * 19
    assert AppIn(name="a", platform="ios").apple_app_id is None
    assert AppPatch.model_validate({"apple_app_id": None}).model_dump(exclude_unset=True) == {"apple_app_id": None}


@pytest.mark.parametrize("given", [
    "", "id", "ID525463029", "id 525463029", "idid525463029", "app525463029", "0525463029", "0", 0, -525463029,
    525463029.0, "525463029.0", True, "5254 63029", "\uff15\uff12\uff15", "1" * 21, 10**20, ["525463029"],
    {"id": 525463029}, "https://apps.apple.com/app/id525463029",
])
def test_anything_else_is_refused_naming_apple_app_id(given: Any) -> None:
    for validate in (lambda: AppIn(name="a", platform="ios", apple_app_id=given),
                     lambda: AppPatch.model_validate({"apple_app_id": given})):
        with pytest.raises(ValidationError) as refused:
            validate()
        assert refused.value.errors()[0]["loc"] == ("apple_app_id",)
