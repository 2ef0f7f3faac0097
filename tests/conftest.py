"""Shared fixtures: a migrated database on SQLite (a file) and on PostgreSQL (a fresh database per test).

PostgreSQL is required in CI (CI=true): an unreachable server fails those tests there. Elsewhere they are
skipped with a message that says why.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from service.db import make_engine, normalise_url, upgrade

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_reachable() -> str | None:
    """Returns None when the server answers, else why not."""
    parts = urlsplit(POSTGRES_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
            pass
    except OSError as exc:
        return f"PostgreSQL at {parts.hostname}:{parts.port} is unreachable ({exc.strerror or exc})"
    try:
        engine = create_engine(normalise_url(POSTGRES_URL))
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # the port answers but we cannot log in
        return f"PostgreSQL at {POSTGRES_URL} refused the connection: {exc}"
    return None


_PG_PROBLEM: str | None | bool = False  # False: not checked yet


def require_postgres() -> None:
    """Fails in CI, skips elsewhere, when PostgreSQL cannot be reached."""
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _postgres_reachable()
    if _PG_PROBLEM:
        if IN_CI:
            pytest.fail(f"{_PG_PROBLEM}; the PostgreSQL tests are required in CI (CI=true)", pytrace=False)
        pytest.skip(f"{_PG_PROBLEM}; skipping the PostgreSQL run (it is required in CI)")


_template_db: str | None = None


def _admin_engine() -> Engine:
    return create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")


def fresh_postgres_url() -> str:
    """Creates a fresh, migrated PostgreSQL database (cloned from a migrated template) and returns its URL."""
    global _template_db
    admin = _admin_engine()
    base = POSTGRES_URL.rsplit("/", 1)[0]
    with admin.connect() as connection:
        if _template_db is None:
            name = f"bs_template_{uuid.uuid4().hex[:8]}"
            connection.execute(text(f'CREATE DATABASE "{name}"'))
            upgrade(f"{base}/{name}")
            _template_db = name
        name = f"bs_test_{uuid.uuid4().hex[:10]}"
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_template_db}"'))
    admin.dispose()
    return f"{base}/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001
    if _template_db is not None:
        try:
            drop_postgres_database(f"{POSTGRES_URL.rsplit('/', 1)[0]}/{_template_db}")
        except Exception:  # leaving a template behind is harmless; never fail the run for it
            pass


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'backlog-sync.db'}"
        upgrade(url)
        yield url
        return
    require_postgres()
    url = fresh_postgres_url()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite engine, for tests that do not need to run on both databases."""
    url = f"sqlite:///{tmp_path / 'backlog-sync.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
