"""Session fixtures for the real services the suite runs against (Kafka-compatible broker, PostgreSQL).

* ``KAFKA_BOOTSTRAP_SERVERS`` set: use that cluster; otherwise start a Tansu broker once per session.
* ``APPREFER_TEST_DATABASE_URL`` set (a SQLAlchemy server URL whose user may CREATE DATABASE): use it;
  otherwise start a throwaway PostgreSQL once per session.

Services start lazily, only when a test requests the fixture.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

from tests.support.broker import BrokerProcess
from tests.support.postgres import PostgresProcess, create_database, drop_database


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with BrokerProcess() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    external = os.environ.get("APPREFER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with PostgresProcess() as pg:
        yield pg.url


@pytest.fixture
def empty_pg_url(postgres_server_url: str) -> Iterator[str]:
    """URL of a fresh, uniquely named, empty database; dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    url = create_database(postgres_server_url, name)
    yield url
    try:
        drop_database(postgres_server_url, name)
    except Exception as exc:  # cleanup is best effort; never mask the test's own outcome
        warnings.warn(f"could not drop test database {name!r}: {exc}", stacklevel=1)


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("orders")`` -> ``"orders-<uuid4 hex>"``, for topic names and group ids."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    return make


@pytest.fixture
def fresh_bootstrap(kafka_bootstrap: str) -> Iterator[str]:
    """A broker of the test's own (it starts in well under a second) so fixed topic names and
    consumer groups cannot see another test's records; the shared cluster when one is given."""
    yield from _own_broker_unless_shared(kafka_bootstrap)


@pytest.fixture(scope="module")
def module_bootstrap(kafka_bootstrap: str) -> Iterator[str]:
    """The same for a whole test module, e.g. one whose services are started once for all its tests."""
    yield from _own_broker_unless_shared(kafka_bootstrap)


def _own_broker_unless_shared(shared_bootstrap: str) -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield shared_bootstrap
        return
    with BrokerProcess() as broker:
        yield broker.bootstrap


@pytest.fixture
def migrated_pg_url(empty_pg_url: str) -> str:
    from shared.db.migrate import upgrade

    upgrade(empty_pg_url)
    return empty_pg_url
