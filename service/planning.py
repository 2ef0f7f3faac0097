"""Write planning: compare what we want each owned field to hold with what the tool last held, and queue
only the differences in the outbox."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from service.config import SourceConfig
from service.db import execute_many, lock_source, session_scope
from service.registry import owned_fields
from service.tables import ItemRow, OutboxRow, utcnow

SCORE_DECIMALS = 2
BATCH = 5000
SUPERSEDE_BATCH = 900  # ids per UPDATE ... IN (...): under every SQLite's limit on bound values


def same_value(desired: Any, remote: Any) -> bool:
    """Tells whether the tool already holds the desired value (numbers compared to the written precision)."""
    if desired is None or remote is None:
        return desired is None and (remote is None or remote == "")
    if isinstance(desired, int | float) and not isinstance(desired, bool):
        try:
            remote_number = float(remote)
        except (TypeError, ValueError):
            return False
        return math.isclose(float(desired), remote_number, abs_tol=0.5 * 10**-SCORE_DECIMALS)
    return str(desired) == str(remote)


def desired_values(row: ItemRow) -> dict[str, Any]:
    return {"score": None if row.score is None else round(row.score, SCORE_DECIMALS), "rank": row.rank}


NATIVE_RANK = "native_rank"
BOARD = "__board__"  # the outbox "item" of a source's native board order


def plan_writes(engine: Engine, source: SourceConfig) -> int:
    """Queues writes for the owned fields whose desired value differs from the remote one; returns how many."""
    planned = plan_native_rank(engine, source)
    fields = [f for f in owned_fields(source.write_back) if f in ("score", "rank")]
    if not fields:
        return planned
    outbox = OutboxRow.__table__
    with session_scope(engine) as db:
        lock_source(db, source.name)
        writer = db.connection()  # inserts in batches while the read of the items streams from its own cursor
        # Columns, not ORM rows: while a large write-back drains (10,000 cards take Trello 17 minutes), every
        # sync reads every queued write, and 20,000 ORM objects cost more than the rest of the plan.
        pending: dict[tuple[str, str], tuple[int, str, Any]] = {
            (external_id, field): (row_id, status, value)
            for row_id, external_id, field, status, value in writer.execute(
                select(outbox.c.id, outbox.c.external_id, outbox.c.field, outbox.c.status, outbox.c.value).where(
                    outbox.c.source == source.name,
                    outbox.c.status.in_(("pending", "sending")),
                    outbox.c.field.in_(fields),
                ).order_by(outbox.c.id)  # the newest row of an item's field wins
            )
        }
        superseded: list[int] = []  # pending rows the plan no longer wants sent
        new_rows: list[dict[str, Any]] = []
        now = utcnow()
        items = ItemRow.__table__
        rows = writer.execute(
            select(items.c.external_id, items.c.score, items.c.rank, items.c.remote_values)
            .where(items.c.source == source.name)
            .execution_options(yield_per=BATCH)
        )
        for external_id, score, rank, remote_values in rows:
            desired = {"score": None if score is None else round(score, SCORE_DECIMALS), "rank": rank}
            remote = remote_values or {}
            for field in fields:
                queued = pending.get((external_id, field))
                if same_value(desired[field], remote.get(field)):
                    if queued is not None and queued[1] == "pending":
                        superseded.append(queued[0])  # the tool already holds it (set by hand, or an earlier write)
                    continue
                if queued is not None:
                    if same_value(desired[field], queued[2]):
                        continue  # already queued, or being sent right now
                    if queued[1] == "pending":
                        superseded.append(queued[0])
                    # A write in flight is left alone; the outbox sends the newer value after it.
                new_rows.append({"source": source.name, "external_id": external_id, "field": field,
                                 "value": desired[field], "status": "pending", "attempts": 0,
                                 "created_at": now, "next_attempt_at": now})
                planned += 1
            if len(new_rows) >= BATCH:
                execute_many(writer, insert(outbox), new_rows)
                new_rows = []
        if new_rows:
            execute_many(writer, insert(outbox), new_rows)
        superseded.sort()  # rows locked in id order, as every writer does
        for start in range(0, len(superseded), SUPERSEDE_BATCH):
            # Only rows still pending: one a worker claimed since the read may be on its way to the tool, and
            # marking it superseded would let a newer write of the field go out beside it; the worker drops it
            # itself if it has not sent yet (a newer row of the field exists), and one settled keeps its outcome.
            writer.execute(update(outbox).where(outbox.c.id.in_(superseded[start:start + SUPERSEDE_BATCH]),
                                                outbox.c.status == "pending")
                           .values(status="superseded"))
    return planned


def plan_native_rank(engine: Engine, source: SourceConfig) -> int:
    """With write_back.native_rank, queues the board order (ranked items, best first) when it changed since the
    order last queued; the outbox sends it through the tool's own ranking (Jira: 50 issues a call)."""
    if not (source.write_back.enabled and source.write_back.native_rank):
        return 0
    with session_scope(engine) as db:
        lock_source(db, source.name)
        order = list(db.execute(
            select(ItemRow.external_id).where(ItemRow.source == source.name, ItemRow.rank.is_not(None))
            .order_by(ItemRow.rank)).scalars())
        last = db.execute(
            select(OutboxRow).where(OutboxRow.source == source.name, OutboxRow.field == NATIVE_RANK,
                                    OutboxRow.status.in_(("pending", "sending", "sent")))
            .order_by(OutboxRow.id.desc()).limit(1)).scalar_one_or_none()
        if len(order) < 2 or (last is not None and last.value == order):
            return 0
        if last is not None and last.status == "pending":
            last.status = "superseded"
        now = utcnow()
        db.execute(insert(OutboxRow.__table__), [{
            "source": source.name, "external_id": BOARD, "field": NATIVE_RANK, "value": order, "status": "pending",
            "attempts": 0, "created_at": now, "next_attempt_at": now}])
        return 1
