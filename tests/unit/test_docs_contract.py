"""Documents derived from the code stay equal to it."""

from __future__ import annotations

import re

from services.admin.integration_settings import settings_table
from tests.support.pipeline import REPO


def test_the_integration_settings_table_is_the_one_the_models_give() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    found = re.search(r"<!-- settings-table -->\n(.*?)\n<!-- /settings-table -->", text, re.S)
    assert found, "docs/architecture.md lost its settings-table markers"
    assert found.group(1) == settings_table(), (
        "docs/architecture.md's integration settings table is stale; paste this:\n" + settings_table())
