"""Storage: migrations apply on SQLite and PostgreSQL, and an unmigrated database is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from service.db import (
    NotMigratedError,
    check_migrated,
    current_revision,
    head_revision,
    make_engine,
    session_scope,
    upgrade,
)
from service.tables import ItemRow, OutboxRow, SourceRow


def test_migrated_database_has_every_table(engine: Engine) -> None:
    check_migrated(engine)
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"items", "sources", "sync_runs", "outbox", "alembic_version"} <= tables


def test_unique_item_per_source_and_external_id(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with session_scope(engine) as db:
        db.add(SourceRow(name="s", kind="jira"))
        db.add(ItemRow(source="s", external_id="1", title="a", item_type="other", status="todo", content_hash="x"))
    with pytest.raises(IntegrityError), session_scope(engine) as db:
        db.add(ItemRow(source="s", external_id="1", title="b", item_type="other", status="todo", content_hash="y"))
    with session_scope(engine) as db:
        db.add(OutboxRow(source="s", external_id="1", field="score", value=12.5))
    with session_scope(engine) as db:
        (row,) = db.query(OutboxRow).all()
        assert row.value == 12.5 and row.status == "pending"


def test_unmigrated_database_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(NotMigratedError, match="Run `backlog-sync db upgrade`"):
        check_migrated(engine)


def test_upgrade_is_repeatable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    upgrade(url)
    check_migrated(make_engine(url))


def test_json_columns_round_trip_numbers_text_and_structures(engine) -> None:
    """A JSON number comes back from SQLite as a number (column affinity); every shape must survive."""
    from service.db import session_scope
    from service.tables import OutboxRow

    values = [12.5, 3, "text", None, ["a", 1], {"k": [1, 2]}, True, "é ✓"]
    with session_scope(engine) as db:
        for value in values:
            db.add(OutboxRow(source="s", external_id="1", field="score", value=value))
    with session_scope(engine) as db:
        from sqlalchemy import select

        stored = [row.value for row in db.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars()]
    assert stored == values
