"""Files that hold data or secrets are the owner's only: the SQLite database (shared/db/session.py) and what
`apprefer dev` keeps in the data dir (services/dev.py)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from services.dev import dev_secrets, private_data_dir
from shared.db.session import make_engine
from shared.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what a login shell has: files 0644 and directories 0755 unless asked
    try:
        yield
    finally:
        os.umask(previous)


def test_sqlite_database_and_its_wal_files_are_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    database = tmp_path / "data" / "apprefer.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
        wal = [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(path.exists() for path in wal)  # WAL mode: SQLite made them, with the database's mode
        assert [mode(path) for path in wal] == [0o600, 0o600]
    engine.dispose()
    assert mode(database) == 0o600
    assert mode(database.parent) == 0o700


def test_an_existing_database_and_directory_keep_their_modes(tmp_path: Path) -> None:
    database = tmp_path / "apprefer.db"
    make_engine(f"sqlite:///{database}").dispose()
    database.chmod(0o640)
    tmp_path.chmod(0o750)
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
    assert (mode(database), mode(tmp_path)) == (0o640, 0o750)


def test_in_memory_sqlite_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        engine = make_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_dev_generates_secret_files_0600_only_for_unset_variables(tmp_path: Path) -> None:
    secrets = dev_secrets(Settings(_env_file=None, APPREFER_SECRET_KEY=None, APPREFER_ADMIN_TOKEN=None),
                          tmp_path)
    assert secrets["APPREFER_ADMIN_TOKEN"] == (tmp_path / "admin.token").read_text().strip()
    assert secrets["APPREFER_SECRET_KEY"] == (tmp_path / "secret.key").read_text().strip()
    assert mode(tmp_path / "admin.token") == mode(tmp_path / "secret.key") == 0o600
    again = dev_secrets(Settings(_env_file=None, APPREFER_SECRET_KEY=None, APPREFER_ADMIN_TOKEN=None), tmp_path)
    assert again == secrets  # kept across runs


def test_dev_uses_set_variables_and_writes_or_touches_no_file(tmp_path: Path) -> None:
    given = Settings(_env_file=None, APPREFER_SECRET_KEY="key-from-env", APPREFER_ADMIN_TOKEN="token-from-env")
    assert dev_secrets(given, tmp_path) == {"APPREFER_SECRET_KEY": "key-from-env",
                                            "APPREFER_ADMIN_TOKEN": "token-from-env"}
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "admin.token").write_text("left by an earlier run\n")
    before = (tmp_path / "admin.token").stat()
    assert dev_secrets(given, tmp_path)["APPREFER_ADMIN_TOKEN"] == "token-from-env"
    after = (tmp_path / "admin.token").stat()
    assert (after.st_mtime_ns, after.st_mode) == (before.st_mtime_ns, before.st_mode)
    assert (tmp_path / "admin.token").read_text() == "left by an earlier run\n"


def test_dev_generates_a_secret_whose_variable_is_blank(tmp_path: Path) -> None:
    secrets = dev_secrets(Settings(_env_file=None, APPREFER_SECRET_KEY="set", APPREFER_ADMIN_TOKEN="  "), tmp_path)
    assert secrets["APPREFER_SECRET_KEY"] == "set" and not (tmp_path / "secret.key").exists()
    assert secrets["APPREFER_ADMIN_TOKEN"] == (tmp_path / "admin.token").read_text().strip() != ""


def test_dev_creates_the_data_dir_0700(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "var"
    private_data_dir(data_dir, chosen=True)
    assert mode(data_dir) == 0o700


def test_dev_tightens_the_default_data_dir_but_only_warns_about_a_chosen_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    default, chosen = tmp_path / "var", tmp_path / "mine"
    for path in (default, chosen):
        path.mkdir()
        path.chmod(0o755)
    private_data_dir(default, chosen=False)
    assert mode(default) == 0o700
    private_data_dir(chosen, chosen=True)
    assert mode(chosen) == 0o755
    assert f"APPREFER_DATA_DIR {chosen} is open to others (mode 755)" in capsys.readouterr().err
    private_data_dir(default, chosen=False)  # already private: nothing to say
    assert capsys.readouterr().err == ""
