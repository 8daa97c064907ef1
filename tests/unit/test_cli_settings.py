"""A bad setting is one clear line and exit 2 at start-up, never a traceback or a failure at send time."""

from __future__ import annotations

import pytest

from services.cli import main


def test_a_forwarder_without_a_base_url_refuses_to_start(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("APPREFER_META_BASE_URL", "")
    assert main(["run", "forwarder", "--network", "meta"]) == 2
    assert capsys.readouterr().err.strip() == ("apprefer: no base URL for the meta forwarder: "
                                                 "set APPREFER_META_BASE_URL")


def test_an_unreadable_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("APPREFER_FORWARD_CONCURRENCY", "lots")
    assert main(["topics", "list"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("apprefer: bad setting APPREFER_FORWARD_CONCURRENCY:") and "Traceback" not in error
