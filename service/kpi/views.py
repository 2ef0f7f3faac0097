"""Read models of the objectives for the admin API and the CLI: latest progress, its series, linked items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from service.config import AppConfig, Objective
from service.kpi.links import linked_objectives, objective_names
from service.tables import ItemRow, KpiItemResultRow, KpiObjectiveProblemRow, KpiProgressRow, OutboxRow


def _summary(objective: Objective, row: KpiProgressRow | None, problem: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": objective.key, "name": objective.name, "owner": objective.owner, "metric": objective.metric,
        "dimension_filter": objective.dimension_filter, "target": objective.target, "start": objective.start,
        "end": objective.end, "milestones": objective.milestones, "split": objective.split,
        "as_of": None, "status": None, "actual": None, "expected_to_date": None, "attainment": None,
        "expected_total": None, "projection": None, "current_milestone": None, "computed_at": None,
        "problem": problem,
    }
    if row is None:
        return data
    current = next((m for m in row.milestones if m["label"] == row.milestone), None)
    data.update(as_of=row.as_of, status=row.status, actual=row.actual, expected_to_date=row.expected,
                attainment=row.attainment, expected_total=row.expected_total,
                projection=row.projection, current_milestone=current, computed_at=row.computed_at)
    return data


def _latest(db: Session, key: str) -> KpiProgressRow | None:
    return db.execute(select(KpiProgressRow).where(KpiProgressRow.objective_key == key)
                      .order_by(KpiProgressRow.as_of.desc()).limit(1)).scalar_one_or_none()


def _problems(db: Session) -> dict[str, str]:
    """Why an objective was not computed on the last run, by key (its progress, if any, is older)."""
    return {row.objective_key: row.problem for row in db.execute(select(KpiObjectiveProblemRow)).scalars()}


def _sent_at(db: Session, planned: set[datetime]) -> dict[tuple[str, str, datetime], datetime]:
    """When the KPI writes (comment or field) queued in the runs that planned these results reached the tool:
    (source, item, planned at) -> the last sent_at, one query for all items. The KPI job queues an item's
    writes with the same timestamp as its results, so a write planned in a later run does not count."""
    if not planned:
        return {}
    rows = db.execute(
        select(OutboxRow.source, OutboxRow.external_id, OutboxRow.created_at, func.max(OutboxRow.sent_at))
        .where(OutboxRow.field.in_(("comment", "kpi_result")), OutboxRow.status == "sent",
               OutboxRow.created_at.in_(sorted(planned)))
        .group_by(OutboxRow.source, OutboxRow.external_id, OutboxRow.created_at))
    return {(source, external_id, created): sent for source, external_id, created, sent in rows}


def objective_summaries(db: Session, config: AppConfig) -> list[dict[str, Any]]:
    """Gets every configured objective with its latest progress (None fields before the first KPI run)."""
    problems = _problems(db)
    return [_summary(objective, _latest(db, objective.key), problems.get(objective.key))
            for objective in config.objectives]


def objective_detail(db: Session, config: AppConfig, key: str, *, series_limit: int = 400) -> dict[str, Any] | None:
    """Gets one objective: latest progress, every milestone, the progress series and the linked items."""
    objective = next((o for o in config.objectives if o.key == key), None)
    if objective is None:
        return None
    latest = _latest(db, key)
    data = _summary(objective, latest, _problems(db).get(key))
    data["milestones_progress"] = list(latest.milestones) if latest is not None else []
    rows = db.execute(select(KpiProgressRow).where(KpiProgressRow.objective_key == key)
                      .order_by(KpiProgressRow.as_of.desc()).limit(series_limit)).scalars()
    data["series"] = [{
        "as_of": row.as_of, "milestone": row.milestone, "milestone_actual": row.milestone_actual,
        "milestone_expected": row.milestone_expected, "milestone_status": row.milestone_status,
        "actual": row.actual, "expected": row.expected, "status": row.status, "projection": row.projection,
    } for row in reversed(list(rows))]
    names = {objective.key: objective_names(objective.key, objective.name, objective.aliases)}
    results = {(row.source, row.external_id): row for row in db.execute(
        select(KpiItemResultRow).where(KpiItemResultRow.objective_key == key)).scalars()}
    sent = _sent_at(db, {row.planned_at for row in results.values()})
    linked = []
    for row in db.execute(select(ItemRow.source, ItemRow.external_id, ItemRow.key, ItemRow.title, ItemRow.url,
                                 ItemRow.status, ItemRow.story, ItemRow.labels)
                          .order_by(ItemRow.source, ItemRow.external_id)):
        if not linked_objectives(row.story, row.labels, names):
            continue
        result = results.get((row.source, row.external_id))
        linked.append({
            "source": row.source, "external_id": row.external_id, "key": row.key, "title": row.title,
            "url": row.url, "status": row.status,
            "written_status": result.status if result is not None else None,
            "written_milestone": result.milestone if result is not None else None,
            "written_text": result.text if result is not None else None,
            # When the result was planned (queued in the outbox), and when a write of it reached the tool.
            "planned_at": result.planned_at if result is not None else None,
            "sent_at": sent.get((row.source, row.external_id, result.planned_at)) if result is not None else None,
        })
    data["linked_items"] = linked
    return data
