"""Write planning against the outbox already queued: a queued write the tool no longer needs is superseded, one
still wanted is left alone, one in flight is never touched, and a value that changed is queued anew."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from service.config import AppConfig
from service.db import session_scope
from service.outbox import OutboxWorker, claim
from service.planning import SUPERSEDE_BATCH, plan_writes
from service.tables import ItemRow, OutboxRow, SourceRow


def source() -> object:
    return AppConfig.model_validate({"sources": [{
        "name": "mkt", "kind": "jira", "base_url": "http://127.0.0.1:9", "jql": "project = MKT",
        "auth": {"email": "a@example.com", "token": {"env": "PLANNING_TEST_TOKEN"}},
    }]}).sources[0]


def item(external_id: str, score: float | None, rank: int | None, remote: dict[str, object]) -> ItemRow:
    return ItemRow(source="mkt", external_id=external_id, title=external_id, item_type="other", status="todo",
                   content_hash="h", score=score, rank=rank, remote_values=remote)


def queued(external_id: str, field: str, value: object, status: str = "pending") -> OutboxRow:
    return OutboxRow(source="mkt", external_id=external_id, field=field, value=value, status=status)


def outbox(engine: Engine) -> list[tuple[str, str, object, str]]:
    with session_scope(engine) as db:
        return [(r.external_id, r.field, r.value, r.status)
                for r in db.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars()]


def test_queued_writes_are_kept_superseded_or_followed_by_a_newer_one(engine: Engine) -> None:
    with session_scope(engine) as db:
        db.add(SourceRow(name="mkt", kind="jira"))
        db.add_all([
            item("held", 10.0, 1, {"score": 10.0, "rank": 1}),  # the tool holds both already
            item("stale", 8.0, 2, {"score": 1.0, "rank": 9}),  # the queued values are no longer wanted
            item("wanted", 6.0, 3, {"score": 1.0, "rank": 3}),  # the queued score is still the one to write
            item("flight", 4.0, 4, {"score": 1.0, "rank": 4}),  # a worker is sending an older score
            item("done", 2.0, 5, {"score": 1.0, "rank": 5}),  # only settled writes: a new one is needed
        ])
        db.flush()
        db.add_all([
            queued("held", "score", 9.0), queued("held", "rank", 2),
            queued("stale", "score", 7.0), queued("stale", "rank", 8),
            queued("wanted", "score", 6.0),
            queued("flight", "score", 3.0, status="sending"),
            queued("done", "score", 1.5, status="sent"), queued("done", "score", 0.5, status="failed"),
        ])

    assert plan_writes(engine, source()) == 4

    assert outbox(engine) == [
        ("held", "score", 9.0, "superseded"), ("held", "rank", 2, "superseded"),
        ("stale", "score", 7.0, "superseded"), ("stale", "rank", 8, "superseded"),
        ("wanted", "score", 6.0, "pending"),
        ("flight", "score", 3.0, "sending"),  # in flight: the outbox sends the newer value after it
        ("done", "score", 1.5, "sent"), ("done", "score", 0.5, "failed"),
        ("stale", "score", 8.0, "pending"), ("stale", "rank", 2, "pending"),
        ("flight", "score", 4.0, "pending"), ("done", "score", 2.0, "pending"),
    ]
    assert plan_writes(engine, source()) == 0  # planned again: nothing new, nothing else superseded
    assert [status for *_, status in outbox(engine)].count("superseded") == 4


def test_more_superseded_writes_than_one_statement_takes(engine: Engine) -> None:
    count = SUPERSEDE_BATCH * 2 + 7
    with session_scope(engine) as db:
        db.add(SourceRow(name="mkt", kind="jira"))
        db.add_all([item(f"i{n}", 5.0, n + 1, {"score": 5.0, "rank": n + 1}) for n in range(count)])
        db.flush()
        db.add_all([queued(f"i{n}", "score", 4.0) for n in range(count)])

    assert plan_writes(engine, source()) == 0
    statuses = [status for *_, status in outbox(engine)]
    assert len(statuses) == count and set(statuses) == {"superseded"}


def test_a_write_a_worker_takes_while_the_plan_runs_is_left_to_finish_before_the_newer_one(engine: Engine) -> None:
    with session_scope(engine) as db:
        db.add(SourceRow(name="mkt", kind="jira"))
        db.add(item("i", 8.0, 1, {"score": 1.0, "rank": 1}))
        db.flush()
        db.add(queued("i", "score", 7.0))  # an older plan's value, still pending
    worker = OutboxWorker(engine=engine, sync_service=SimpleNamespace(config=SimpleNamespace(claim_seconds=300)))
    sending: list[OutboxRow] = []

    def meanwhile(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001, ARG001
        # After the plan read the queue, before it writes: a worker claims the 7.0 and starts sending it.
        if statement.lstrip().startswith("SELECT") and "FROM items" in statement and not sending:
            sending.extend(worker._take(claim(engine, limit=10, claim_seconds=300)) or [])

    event.listen(engine, "before_cursor_execute", meanwhile)
    try:
        assert plan_writes(engine, source()) == 1
    finally:
        event.remove(engine, "before_cursor_execute", meanwhile)

    assert [(row.value, row.status) for row in sending] == [(7.0, "sending")]
    # The write in flight stays "sending"; the newer value waits behind it instead of going out beside it.
    assert outbox(engine) == [("i", "score", 7.0, "sending"), ("i", "score", 8.0, "pending")]
    assert worker._take(claim(engine, limit=10, claim_seconds=300)) is None
