"""Rescoring a source: compute every item's score with the source's method, rank them, store what changed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Engine

from mappings.model import Problem
from service.config import SourceConfig
from service.db import execute_many, lock_source, session_scope
from service.scoring import rank, score_item
from service.tables import ItemRow, KpiReachRow

CLOSED_STATUSES = ("done", "cancelled")


@dataclass(slots=True)
class _Scorable:
    """The part of a BacklogItem the scoring engine reads; slotted, so 100,000 of them stay small."""

    source: str
    external_id: str
    key: str | None
    inputs: _Inputs
    due_date: date | None
    created_at: datetime | None


@dataclass(slots=True)
class _Inputs:
    """An item's stored ScoringInputs, as the scoring engine reads them (attributes); a pydantic model per row
    cost more than scoring it."""

    reach: float | None = None
    impact: float | None = None
    confidence: float | None = None
    effort: float | None = None
    value: float | None = None
    time_criticality: float | None = None
    risk_reduction: float | None = None
    ease: float | None = None
    reach_derived: bool = False

    @classmethod
    def stored(cls, inputs: dict[str, Any] | None) -> _Inputs:
        if not inputs:
            return cls()
        get = inputs.get
        return cls(get("reach"), get("impact"), get("confidence"), get("effort"), get("value"),
                   get("time_criticality"), get("risk_reduction"), get("ease"), bool(get("reach_derived", False)))


@dataclass(slots=True)
class _Confidence:
    """All the ranking reads of an item's inputs once it is scored (its tie-break)."""

    confidence: float | None


BATCH = 5000  # rows read and written per round trip: memory stays flat whatever the backlog's size


def rescore_source(engine: Engine, source: SourceConfig) -> int:
    """Scores and ranks every item of a source; writes only rows whose result changed; returns that count.

    Rows are streamed: each is scored as it is read and only what ranking needs is kept (a few hundred bytes
    an item), so 100,000 items fit in tens of megabytes."""
    params = {"value_threshold": source.scoring.value_threshold, "effort_threshold": source.scoring.effort_threshold}
    method = source.scoring.method
    with session_scope(engine) as db:
        lock_source(db, source.name)
        items = ItemRow.__table__
        connection = db.connection()
        # Core rows, not the ORM's: its result layer cost more per row than reading the columns.
        rows = connection.execute(
            select(items.c.id, items.c.external_id, items.c.key, items.c.inputs, items.c.due_date,
                   items.c.created_at, items.c.score, items.c.method, items.c.rank, items.c.quadrant,
                   items.c.score_problems, items.c.status)
            .where(items.c.source == source.name)
            .execution_options(yield_per=BATCH)
        )
        # Reach derived from GA4 traffic fills in only where the user entered none: theirs always wins.
        derived = {row.external_id: row for row in db.execute(
            select(KpiReachRow).where(KpiReachRow.source == source.name)).scalars()} if source.reach_from_ga4 else {}
        current: dict[str, tuple[Any, ...]] = {}
        pairs = []
        closed = []  # done and cancelled items keep their score but take no place in the ranking
        for (row_id, external_id, key, inputs, due, created, score, old_method, old_rank, quadrant, problems,
             status) in rows:
            inputs_model = _Inputs.stored(inputs)
            reach = derived.get(external_id) if inputs_model.reach is None else None
            if reach is not None and reach.reach is not None:
                inputs_model = replace(inputs_model, reach=reach.reach, reach_derived=True)
            item = _Scorable(source.name, external_id, key, inputs_model, due, created)
            scored_item = score_item(item, method, **params)  # type: ignore[arg-type]
            if reach is not None and reach.reach is not None:
                scored_item = replace(scored_item, problems=(*scored_item.problems, Problem(
                    field="reach", value=f"{reach.reach:.10g}",
                    reason=f"derived from GA4: {reach.metric} over the last {reach.days} days for "
                           f"{reach.dimension} {reach.named} (enter a reach to override it)")))
            elif reach is not None:
                scored_item = replace(scored_item, problems=(*scored_item.problems, Problem(
                    field="reach", value=None,
                    reason=f"not derived: GA4 had no traffic ({reach.metric}) over the last {reach.days} days for "
                           f"{reach.dimension} {reach.named} (enter a reach, or wait for its traffic)")))
            if status in CLOSED_STATUSES:
                closed.append(replace(scored_item, rank=None))
            else:
                item.inputs = _Confidence(inputs_model.confidence)  # type: ignore[assignment]
                pairs.append((item, scored_item))
            current[external_id] = (row_id, score, old_method, old_rank, quadrant, problems or None)
        changes = []
        changed = 0
        statement = update(items).where(items.c.id == bindparam("row_id"))
        ranked = rank(pairs)  # type: ignore[arg-type]
        del pairs
        for scored in [*ranked, *closed]:
            row_id, score, old_method, old_rank, quadrant, problems = current[scored.external_id]
            new_problems = [p.model_dump(mode="json") for p in scored.problems] or None
            new = (scored.score, scored.method.value, scored.rank, scored.quadrant.value if scored.quadrant else None)
            if new != (score, old_method, old_rank, quadrant) or new_problems != problems:
                changes.append({"row_id": row_id, "score": new[0], "method": new[1], "rank": new[2],
                                "quadrant": new[3], "score_problems": new_problems or []})
        del current
        changes.sort(key=lambda change: change["row_id"])  # rows locked in id order, as every writer does
        for start in range(0, len(changes), BATCH):
            execute_many(connection, statement, changes[start:start + BATCH])
            changed += len(changes[start:start + BATCH])
        return changed
