"""execute_many, the bulk path of a sync's inserts and updates: what it stores is what SQLAlchemy stores, value for
value and (on SQLite) byte for byte, on both databases; statements SQLAlchemy must complete itself still work."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, event, insert, literal_column, select, text, update
from sqlalchemy.engine import Engine

from service.db import MANY_ROWS, execute_many, session_scope
from service.tables import ItemRow, OutboxRow

PARIS = timezone(timedelta(hours=2))


def item_rows(prefix: str, count: int) -> list[dict[str, Any]]:
    now = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)  # one object for every row, as a sync's `now`
    shared_story = {"role": "responsable SEO", "want": "des balises title ≤ 60 caractères", "language": "fr"}
    rows = []
    for n in range(count):
        rows.append({
            "source": "mkt", "external_id": f"{prefix}{n}", "key": None if n % 3 else f"MKT-{n}",
            "url": f"https://example.test/{n}", "title": f"Carte n° {n} — été 🚀",
            "description": None if n % 4 else "x\ny",
            "item_type": "content", "status": "todo", "raw_status": "À faire", "assignee": None, "labels": ["seo", "é"],
            "sprint": None, "due_date": date(2027, 1, 1 + n % 28) if n % 2 else None,
            "created_at": datetime(2026, 6, 1, 12, 0, tzinfo=PARIS) + timedelta(minutes=n),  # stored as UTC
            "updated_at": None if n % 5 == 0 else datetime(2026, 11, 30, 8, n % 60, 1, 500, tzinfo=UTC),
            "container": "board-1", "story": shared_story if n % 2 else {"acceptance_criteria": [f"c{n}"]},
            "inputs": {"reach": 1200.5 + n, "impact": 2, "confidence": 80, "effort": None},
            "problems": [{"field": "reach", "reason": "«lots» is not a number", "value": "lots"}] if n % 7 == 0 else [],
            "extra": {"board_id": "b1", "pos": 16384.0 * n, "nested": {"k": [1, None, True]}},
            "score": None if n % 6 == 0 else n / 3, "method": "rice", "rank": n + 1, "quadrant": None,
            "score_problems": [], "content_hash": f"h{n}", "remote_values": {"score": None, "rank": n},
            "synced_at": now,
        })
    return rows


def stored(engine: Engine, prefix: str) -> list[tuple[Any, ...]]:
    columns = [c for c in ItemRow.__table__.c if c.name not in ("id", "external_id")]
    with session_scope(engine) as db:
        return [tuple(row) for row in db.execute(
            select(*columns).where(ItemRow.external_id.like(f"{prefix}%")).order_by(ItemRow.external_id))]


def raw_sqlite(engine: Engine, prefix: str) -> list[tuple[Any, ...]]:
    names = [c.name for c in ItemRow.__table__.c if c.name not in ("id", "external_id")]
    query = ", ".join(f'typeof("{name}"), "{name}"' for name in names)
    with session_scope(engine) as db:
        return [tuple(row) for row in db.execute(
            text(f"SELECT {query} FROM items WHERE external_id LIKE :p ORDER BY external_id"), {"p": f"{prefix}%"})]


def driver_calls(engine: Engine) -> list[tuple[str, bool, Any]]:
    """(statement, executemany, parameters) of each statement sent as text, not compiled by SQLAlchemy per call."""
    calls: list[tuple[str, bool, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001, ARG001
        if context.compiled is None:
            calls.append((statement, executemany, parameters))

    event.listen(engine, "before_cursor_execute", record)
    return calls


def test_inserts_and_updates_store_exactly_what_sqlalchemy_stores(engine: Engine) -> None:
    table = ItemRow.__table__
    calls = driver_calls(engine)
    with session_scope(engine) as db:
        db.connection().execute(insert(table), item_rows("a", 60))
        execute_many(db, insert(table), item_rows("b", 60))
    assert stored(engine, "a") == stored(engine, "b")
    if engine.dialect.name == "sqlite":
        assert raw_sqlite(engine, "a") == raw_sqlite(engine, "b")  # the same text for dates, JSON and times
        # The second insert went to the driver as one executemany of 60 rows.
        assert [(s.split(" (")[0], many, len(p)) for s, many, p in calls] == [("INSERT INTO items", True, 60)]

    with session_scope(engine) as db:
        ids = {external_id: row_id for row_id, external_id in db.execute(select(table.c.id, table.c.external_id))}
    later = datetime(2026, 12, 3, 1, 2, 3, tzinfo=PARIS)

    def changes(prefix: str) -> list[dict[str, Any]]:
        return [{"row_id": ids[f"{prefix}{n}"], "score": None if n % 4 == 0 else n * 1.25, "rank": 60 - n,
                 "score_problems": [{"field": "effort", "reason": "missing input: effort"}] if n % 2 else [],
                 "updated_at": later} for n in range(60)]  # every row: enough for the bulk path

    statement = update(table).where(table.c.id == bindparam("row_id"))
    with session_scope(engine) as db:
        db.connection().execute(statement, changes("a"))
        execute_many(db, statement, changes("b"))
    assert stored(engine, "a") == stored(engine, "b")
    if engine.dialect.name == "sqlite":
        assert raw_sqlite(engine, "a") == raw_sqlite(engine, "b")
    first = stored(engine, "b")[0]
    created_at = first[[c.name for c in table.c if c.name not in ("id", "external_id")].index("created_at")]
    assert created_at.replace(tzinfo=UTC) == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # Paris noon, as UTC


def test_statements_sqlalchemy_must_complete_take_its_own_path(engine: Engine) -> None:
    outbox = OutboxRow.__table__
    now = datetime.now(UTC)
    # No status, attempts or next_attempt_at: the columns' defaults fill them in, row by row.
    execute_rows = [{"source": "mkt", "external_id": f"e{n}", "field": "score", "value": n, "created_at": now}
                    for n in range(5)]
    with session_scope(engine) as db:
        execute_many(db, insert(outbox), execute_rows)
        execute_many(db, insert(outbox), [])  # nothing to do
    with session_scope(engine) as db:
        # A value in the statement rather than in the rows.
        execute_many(db, update(outbox).where(outbox.c.external_id == bindparam("e")).values(status="superseded"),
                     [{"e": "e1"}, {"e": "e3"}])
    with session_scope(engine) as db:
        rows = db.execute(select(OutboxRow).order_by(OutboxRow.external_id)).scalars().all()
    assert [(r.external_id, r.value, r.status, r.attempts) for r in rows] == [
        ("e0", 0, "pending", 0), ("e1", 1, "superseded", 0), ("e2", 2, "pending", 0), ("e3", 3, "superseded", 0),
        ("e4", 4, "pending", 0)]
    assert all(r.next_attempt_at is not None for r in rows)


def test_a_statement_without_bound_values_or_with_its_own_options_runs_once_a_row(engine: Engine) -> None:
    outbox = OutboxRow.__table__
    with session_scope(engine) as db:
        db.add(OutboxRow(source="mkt", external_id="e", field="score", value=1))
    bump = update(outbox).values(attempts=outbox.c.attempts + literal_column("1"))  # nothing bound: all inline
    with session_scope(engine) as db:
        execute_many(db, bump, [{}, {}, {}])
        execute_many(db, bump.execution_options(synchronize_session=False), [{}, {}])
    with session_scope(engine) as db:
        assert db.execute(select(OutboxRow.attempts)).scalar_one() == 5


def test_bulk_statements_sqlalchemy_must_complete_still_take_its_path(engine: Engine) -> None:
    # As the two tests above, with enough rows for the bulk path to be considered at all.
    outbox = OutboxRow.__table__
    count = MANY_ROWS + 10
    now = datetime.now(UTC)
    with session_scope(engine) as db:  # no status, attempts or next_attempt_at: column defaults fill them in
        execute_many(db, insert(outbox), [{"source": "mkt", "external_id": f"e{n}", "field": "score", "value": n,
                                           "created_at": now} for n in range(count)])
    bump = update(outbox).values(attempts=outbox.c.attempts + literal_column("1"))  # nothing bound
    with session_scope(engine) as db:
        execute_many(db, bump, [{}] * count)
    with session_scope(engine) as db:
        rows = db.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars().all()
    assert [(r.value, r.status, r.attempts) for r in rows] == [(n, "pending", count) for n in range(count)]
    assert all(r.next_attempt_at is not None for r in rows)
