"""`apprefer db upgrade` on PostgreSQL and SQLite gives the models' schema, and is repeatable."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from services.cli import main
from shared.db.models import Base


def assert_schema(url: str) -> None:
    engine = create_engine(url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(Base.metadata.tables) <= names
    assert "alembic_version" in names


def test_upgrade_postgres_twice(empty_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Users write postgresql://; the settings pick the psycopg 3 driver for them.
    monkeypatch.setenv("DATABASE_URL", empty_pg_url.replace("postgresql+psycopg://", "postgresql://"))
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0
    assert_schema(empty_pg_url)


def test_upgrade_sqlite_default_under_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("APPREFER_DATA_DIR", str(tmp_path / "data"))
    assert main(["db", "upgrade"]) == 0
    assert_schema(f"sqlite:///{tmp_path / 'data' / 'apprefer.db'}")


def database_at(revision: str, database: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, Engine]:
    """An empty database of the kind named, migrated to `revision`."""
    from shared.db.migrate import upgrade

    url = request.getfixturevalue("empty_pg_url") if database == "postgresql" else f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url, revision)
    return url, create_engine(url)


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_existing_apps_get_the_default_revenue_bound(database: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    from shared.db.migrate import upgrade

    url, engine = database_at("0005", database, tmp_path, request)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO apps (app_id, name, platform, lookback_days, fingerprint_window_hours, "
                                "reattribution_days, created_at_ms) VALUES ('app_old', 'old', 'ios', 7, 24, 90, 1)"))
    upgrade(url)
    with engine.connect() as connection:
        bound = connection.execute(text("SELECT max_revenue_amount FROM apps WHERE app_id = 'app_old'")).scalar()
    engine.dispose()
    assert bound == 1_000_000


def test_models_and_migrations_agree(empty_pg_url: str) -> None:
    """A model change without a migration fails here (autogenerate finds a difference)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shared.db.migrate import upgrade

    upgrade(empty_pg_url)
    engine = create_engine(empty_pg_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_audit_rows_already_stored_fill_audit_events(database: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    from shared.db.migrate import upgrade

    url, engine = database_at("0013", database, tmp_path, request)
    rows = [("a1", "e1", "purchase", "meta", "retrying", 100), ("a2", "e1", None, "meta", "delivered", 300),
            ("a3", "e1", None, "tiktok", "delivered", 200), ("a4", "e2", "open", "meta", "sandbox", 50),
            ("a5", "pb", "install", "skan_postback", "delivered", 10), ("a6", "e3", "login", "meta", "rejected", 400)]
    with engine.begin() as connection:
        for audit_id, event_id, name, network, status, at in rows:
            connection.execute(text(
                "INSERT INTO audit_log (audit_id, app_id, event_id, event_name, network, status, attempts, "
                "recorded_at_ms) VALUES (:a, 'app_old', :e, :n, :net, :s, 1, :t)"),
                {"a": audit_id, "e": event_id, "n": name, "net": network, "s": status, "t": at})
    upgrade(url)
    with engine.connect() as connection:
        found = connection.execute(text("SELECT event_id, event_name, first_ms, delivered_ms FROM audit_events "
                                        "ORDER BY event_id")).all()
    engine.dispose()
    assert [tuple(r) for r in found] == [("e1", "purchase", 100, 200), ("e3", "login", 400, None)]
