"""Two workers that read the same due rows at the same moment never both take one: the outbox's writes and the
inbox's deliveries are claimed by compare-and-set. (On SQLite a read happens outside the write lock, so two
claimers that both read before either writes used to both get the rows, and a score was written twice.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.engine import Engine

from service.config import AppConfig
from service.db import session_scope
from service.inbox import InboxWorker
from service.outbox import RECOVERED, OutboxWorker, claim
from service.sync import SyncService
from service.tables import InboxRow, OutboxRow, utcnow

ROWS = 40


@pytest.fixture
def both_read_first(engine: Engine) -> Iterator[Callable[[str], None]]:
    """Holds each claimer thread (see race()) after its first read of `table` until the other has read too, so
    both claims see the same due rows before either writes. Returns a function that arms it for a table name."""
    barrier = threading.Barrier(2, timeout=10)
    seen = threading.local()
    armed: list[str] = []
    passed: list[int] = []

    def after_execute(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001, ARG001
        if armed and threading.current_thread().name.startswith("claimer") \
                and statement.lstrip().upper().startswith("SELECT") and f"FROM {armed[0]}" in statement \
                and not getattr(seen, "done", False):
            seen.done = True
            # Each claim reads once (on PostgreSQL SKIP LOCKED answers at once with what is left), so both
            # threads reach here; a barrier that breaks fails the claim, and the test with it.
            barrier.wait()
            passed.append(threading.get_ident())

    event.listen(engine, "after_cursor_execute", after_execute)
    yield armed.append
    event.remove(engine, "after_cursor_execute", after_execute)
    assert len(passed) == 2, "the two claims were not held until both had read"


def race(first: Callable[[], list], second: Callable[[], list]) -> tuple[list, list]:
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def run(index: int, claim_rows: Callable[[], list]) -> None:
        try:
            results[index] = claim_rows()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index, claim_rows), name=f"claimer-{index}")
               for index, claim_rows in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results[0], results[1]


def test_two_outbox_claims_of_the_same_rows_take_each_row_once(engine: Engine, both_read_first) -> None:
    now = utcnow()
    with session_scope(engine) as db:
        db.execute(insert(OutboxRow.__table__), [
            {"source": "mkt", "external_id": str(n), "field": "score", "value": n, "status": "pending",
             "attempts": 0, "created_at": now, "next_attempt_at": now - timedelta(seconds=1)} for n in range(ROWS)])
    both_read_first("outbox")

    first, second = race(lambda: claim(engine, limit=100, claim_seconds=30),
                         lambda: claim(engine, limit=100, claim_seconds=30))

    ids_first, ids_second = {row.id for row in first}, {row.id for row in second}
    assert not ids_first & ids_second, "a write was claimed by two workers"
    assert len(ids_first | ids_second) == ROWS
    with session_scope(engine) as db:
        stored = {row.id: row for row in db.execute(select(OutboxRow)).scalars()}
    for rows in (first, second):
        for row in rows:  # what each claimer holds is what the database says it holds
            assert stored[row.id].claimed_by == row.claimed_by and stored[row.id].status == "sending"
            assert stored[row.id].attempts == 1


def test_a_claim_that_expired_is_taken_over_once_and_marked_recovered(engine: Engine) -> None:
    now = utcnow()
    with session_scope(engine) as db:
        db.execute(insert(OutboxRow.__table__), [
            {"source": "mkt", "external_id": "1", "field": "score", "value": 5, "status": "sending",
             "attempts": 1, "claimed_by": "dead-worker", "claimed_until": now - timedelta(seconds=1),
             "created_at": now, "next_attempt_at": now},
            {"source": "mkt", "external_id": "2", "field": "score", "value": 6, "status": "sending",
             "attempts": 1, "claimed_by": "live-worker", "claimed_until": now + timedelta(seconds=60),
             "created_at": now, "next_attempt_at": now},
            {"source": "mkt", "external_id": "3", "field": "score", "value": 7, "status": "pending",
             "attempts": 0, "claimed_by": None, "claimed_until": None, "created_at": now, "next_attempt_at": now}])
        db.execute(update(OutboxRow).where(OutboxRow.external_id == "3").values(last_error="HTTP 503"))

    taken = {row.external_id: row for row in claim(engine, limit=10, claim_seconds=30)}

    assert set(taken) == {"1", "3"}  # the live worker's row is left alone
    assert taken["1"].last_error == f"{RECOVERED} the claim of dead-worker expired"
    assert taken["1"].attempts == 2
    assert taken["3"].last_error == "HTTP 503"  # a pending row is not a recovered one
    assert claim(engine, limit=10, claim_seconds=30) == []


def test_two_inbox_claims_of_the_same_deliveries_take_each_once(engine: Engine, both_read_first) -> None:
    long_ago = utcnow() - timedelta(minutes=5)
    with session_scope(engine) as db:
        db.execute(insert(InboxRow.__table__), [
            {"source": "mkt", "delivery_id": f"d-{n}", "body": "{}", "item_id": None, "received_at": long_ago,
             "status": "pending", "attempts": 0} for n in range(ROWS)])
    sync = SyncService(engine=engine, config=AppConfig())
    workers = [InboxWorker(engine=engine, sync_service=sync, outbox=OutboxWorker(engine=engine, sync_service=sync))
               for _ in range(2)]
    both_read_first("webhook_inbox")

    first, second = race(workers[0].claim, workers[1].claim)

    ids_first, ids_second = {row.id for row in first}, {row.id for row in second}
    assert not ids_first & ids_second, "a delivery was claimed by two workers"
    assert len(ids_first | ids_second) == ROWS
    with session_scope(engine) as db:
        stored = {row.id: row for row in db.execute(select(InboxRow)).scalars()}
    assert all(stored[row.id].claimed_by == row.claimed_by for row in first + second)
    assert all(row.status == "processing" and row.attempts == 1 for row in stored.values())
