"""The KPI job: reads GA4 into daily snapshots (backfill in chunks, the last days re-read every run),
computes each objective's progress, plans the KPI result writes to linked items, and refreshes derived reach."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from connectors.base import AuthError, FatalError, MetricRow, RetryPolicy
from mappings.kpi_text import KpiResult, kpi_field_text, kpi_result_text
from service.config import AppConfig, GA4Source, Objective, SourceConfig
from service.db import lock_source, session_scope
from service.kpi.expression import MetricExpression, filters_json
from service.kpi.links import linked_objectives, match_dimension_value, named_value, objective_names
from service.kpi.progress import Plan, Progress, build_milestones, compute_progress, relative_target
from service.outbox import WORKER_ID
from service.planning import plan_writes
from service.registry import owned_fields
from service.scoring_job import rescore_source
from service.tables import (
    ItemRow,
    KpiCoverageRow,
    KpiItemResultRow,
    KpiJobRow,
    KpiObjectiveProblemRow,
    KpiProgressRow,
    KpiReachRow,
    KpiSnapshotRow,
    OutboxRow,
    SourceState,
    utcnow,
)

log = logging.getLogger("backlog_sync.kpi")

JOB = "kpi"
BATCH_REPORTS = 5  # GA4's batchRunReports takes at most 5 requests; one batch is one call, stored at once


class KpiUnavailable(Exception):
    """The KPI job did not run: another run holds it, it ran this tick, or GA4 asked us to wait."""


@dataclass(frozen=True)
class Series:
    """One GA4 series the objectives read: a dimension filter and the metrics, by day."""

    filters: tuple[tuple[str, str], ...]
    metrics: tuple[str, ...]

    @property
    def filters_key(self) -> str:
        return filters_json(self.filters)

    @property
    def metrics_key(self) -> str:
        return ",".join(self.metrics)


@dataclass
class KpiRunResult:
    status: str = "succeeded"  # succeeded | incomplete (quota: resumes later) | failed
    calls: int = 0
    chunks_read: int = 0
    days_read: int = 0
    snapshots_changed: int = 0
    objectives_computed: list[str] = field(default_factory=list)
    objectives_incomplete: list[str] = field(default_factory=list)
    objectives_failed: dict[str, str] = field(default_factory=dict)  # key -> why it was not computed
    writes_planned: int = 0
    reach_changed: int = 0
    resume_after: datetime | None = None
    error: str | None = None


def series_of(objective: Objective) -> Series:
    expression = MetricExpression.parse(objective.metric)
    return Series(filters=tuple(sorted(objective.dimension_filter.items())), metrics=expression.metrics)


def chunks(start: date, end: date, days: int) -> Iterator[tuple[date, date]]:
    """Cuts start..end (inclusive) into consecutive stretches of at most `days` days."""
    cursor = start
    while cursor <= end:
        last = min(end, cursor + timedelta(days=days - 1))
        yield cursor, last
        cursor = last + timedelta(days=1)


def build_ga4_connector(ga4: GA4Source, policy: RetryPolicy | None = None) -> Any:
    """Builds the GA4 connector from the config's ga4 section."""
    from connectors.ga4 import GA4Connector

    return GA4Connector(property_id=property_digits(ga4.property_id), endpoint=ga4.endpoint,
                        credentials_file=ga4.credentials_file, anonymous=ga4.anonymous, policy=policy,
                        reserve_fraction=ga4.reserve_fraction)


def property_digits(property_id: str) -> str:
    return property_id.removeprefix("properties/")


class KpiJob:
    """Runs the KPI work against the database and one GA4 property."""

    def __init__(self, *, engine: Engine, config: AppConfig, policy: RetryPolicy | None = None,
                 connector_factory: Callable[[GA4Source], Any] | None = None) -> None:
        if config.ga4 is None:
            raise ValueError("the KPI job needs a 'ga4' section in the config")
        self.engine = engine
        self.config = config
        self.ga4: GA4Source = config.ga4
        self.property_id = property_digits(self.ga4.property_id)
        self.policy = policy
        self._factory = connector_factory or (lambda ga4: build_ga4_connector(ga4, policy))
        self._connector: Any = None
        self._owner: str | None = None

    # -- connector -----------------------------------------------------------------------------

    def connector(self) -> Any:
        if self._connector is None:
            self._connector = self._factory(self.ga4)
        return self._connector

    def close(self) -> None:
        if self._connector is not None:
            try:
                self._connector.close()
            finally:
                self._connector = None

    # -- the run -------------------------------------------------------------------------------

    def run(self, *, today: date | None = None, trigger: str = "cli") -> KpiRunResult:
        """Runs the job once. Scheduled runs skip a paused job, a quota pause, and a tick another replica ran."""
        today = today or datetime.now(ZoneInfo(self.ga4.time_zone)).date()  # GA4's days are the property's
        self._ensure_row()
        with session_scope(self.engine) as db:
            row = db.get(KpiJobRow, JOB)
            assert row is not None
            if trigger == "schedule":
                if row.state in (SourceState.NEEDS_CREDENTIALS, SourceState.PAUSED):
                    raise KpiUnavailable(f"the KPI job is {row.state} until a manual run succeeds: {row.last_error}")
                if row.resume_after is not None and _aware(row.resume_after) > utcnow():
                    raise KpiUnavailable(f"GA4 quota is low; the KPI job resumes after {row.resume_after}")
        min_gap = self.ga4.schedule.interval_seconds * 0.8 if trigger == "schedule" else None
        owner = f"{WORKER_ID[:55]}:{uuid.uuid4().hex[:8]}"
        if not self._acquire_lease(owner, min_gap=min_gap):
            raise KpiUnavailable("the KPI job is running elsewhere, or ran this tick")
        self._owner = owner
        started = time.monotonic()
        result = KpiRunResult()
        try:
            self._run_leased(today, result)
        except Exception as exc:  # every failure ends the run with a clear reason, recorded on the job
            result.status = "failed"
            result.error = f"{type(exc).__name__}: {exc}"
            self._record_failure(exc)
        else:
            self._record_success(result)
        finally:
            self._release_lease(owner)
        log.info("KPI run %s in %.2fs: %d calls, %d chunks, %d snapshots changed, %d objectives, %d writes planned",
                 result.status, time.monotonic() - started, result.calls, result.chunks_read,
                 result.snapshots_changed, len(result.objectives_computed), result.writes_planned)
        return result

    def _run_leased(self, today: date, result: KpiRunResult) -> None:
        from connectors.ga4 import QuotaExhausted

        connector = self.connector()
        calls_before = connector.calls
        read_through: dict[Series, date | None] = {}
        try:
            try:
                self._read_series(today, result, read_through)
            except QuotaExhausted as exc:
                wait = exc.retry_after if exc.retry_after is not None else 3600.0
                result.status = "incomplete"
                result.resume_after = utcnow() + timedelta(seconds=wait)
                log.warning("GA4 quota exhausted after %d chunks; the backfill resumes after %s",
                            result.chunks_read, result.resume_after.isoformat(timespec="seconds"))
            self._compute_objectives(today, result, read_through)
            changed_sources = set()
            if result.status == "succeeded":
                try:
                    changed_sources = self._refresh_reach(today, result)
                except QuotaExhausted as exc:
                    result.status = "incomplete"
                    result.resume_after = utcnow() + timedelta(seconds=exc.retry_after or 3600.0)
            for source in self.config.sources:
                if source.name in changed_sources:
                    rescore_source(self.engine, source)
                    result.writes_planned += plan_writes(self.engine, source)
                result.writes_planned += self.plan_kpi_writes(source)
        finally:
            result.calls = connector.calls - calls_before

    # -- reading GA4 -----------------------------------------------------------------------------

    def needed_series(self, today: date) -> dict[Series, tuple[date, date]]:
        """Each series the objectives read, with the days they need (baseline and window, up to yesterday)."""
        needed: dict[Series, tuple[date, date]] = {}
        yesterday = today - timedelta(days=1)
        for objective in self.config.objectives:
            series = series_of(objective)
            period = objective.baseline_period()
            first = min(objective.start, period[0]) if period else objective.start
            last = min(objective.end, yesterday)
            if last < first:
                continue  # nothing has happened yet
            if series in needed:
                first, last = min(first, needed[series][0]), max(last, needed[series][1])
            needed[series] = (first, last)
        return needed

    def _read_series(self, today: date, result: KpiRunResult, read_through: dict[Series, date | None]) -> None:
        from connectors.ga4 import QuotaExhausted, ReportSpec

        final_before = today - timedelta(days=self.ga4.lookback_days)  # days before this are final
        plan: list[tuple[Series, date, date]] = []
        with session_scope(self.engine) as db:
            for series, (first, last) in self.needed_series(today).items():
                coverage = self._coverage(db, series)
                start = first
                if coverage is not None and coverage.fetched_to is not None and coverage.fetched_from is not None \
                        and coverage.fetched_from <= first:
                    start = max(first, coverage.fetched_to + timedelta(days=1))
                # Days inside the lookback are re-read every run, whatever the coverage says.
                start = min(start, max(first, final_before))
                read_through[series] = start - timedelta(days=1) if start > first else None
                plan.extend((series, a, b) for a, b in chunks(start, last, self.ga4.backfill_chunk_days))
        connector = self.connector()
        for offset in range(0, len(plan), BATCH_REPORTS):
            batch = plan[offset:offset + BATCH_REPORTS]
            specs = [ReportSpec(metrics=series.metrics, start_date=a, end_date=b, dimensions=("date",),
                                filters=series.filters) for series, a, b in batch]
            try:
                reports = connector.run_reports(specs)
            except QuotaExhausted as exc:
                # Keep the chunks whose every page arrived, in order (coverage only grows contiguously).
                done = []
                for index in range(len(batch)):
                    if index not in exc.completed:
                        break
                    done.append(exc.completed[index])
                self._store_batch(batch[:len(done)], done, final_before, result, read_through)
                raise
            self._store_batch(batch, reports, final_before, result, read_through)

    def _store_batch(self, batch: list[tuple[Series, date, date]], reports: list[list[MetricRow]],
                     final_before: date, result: KpiRunResult, read_through: dict[Series, date | None]) -> None:
        """Stores chunks with their coverage marks and renews the lease, in one transaction."""
        if not batch:
            return
        with session_scope(self.engine) as db:
            for (series, a, b), rows in zip(batch, reports, strict=True):
                result.snapshots_changed += self._store(db, series, a, b, rows)
                self._advance_coverage(db, series, a, b, final_before)
                read_through[series] = b
                result.chunks_read += 1
                result.days_read += (b - a).days + 1
            db.execute(update(KpiJobRow).where(KpiJobRow.name == JOB, KpiJobRow.lease_owner == self._owner)
                       .values(lease_expires_at=utcnow() + timedelta(seconds=self._lease_seconds())))

    def _coverage(self, db: Any, series: Series) -> KpiCoverageRow | None:
        return db.execute(select(KpiCoverageRow).where(
            KpiCoverageRow.property_id == self.property_id, KpiCoverageRow.filters == series.filters_key,
            KpiCoverageRow.metrics == series.metrics_key)).scalar_one_or_none()

    def _advance_coverage(self, db: Any, series: Series, start: date, end: date, final_before: date) -> None:
        """Moves the stored-and-final mark forward, in the same transaction as the chunk's snapshots."""
        coverage = self._coverage(db, series)
        if coverage is None:
            coverage = KpiCoverageRow(property_id=self.property_id, filters=series.filters_key,
                                      metrics=series.metrics_key)
            db.add(coverage)
        final_end = min(end, final_before - timedelta(days=1))
        contiguous = coverage.fetched_to is not None and coverage.fetched_from is not None \
            and coverage.fetched_from <= start <= coverage.fetched_to + timedelta(days=1)
        if not contiguous:
            coverage.fetched_from = start  # a new or an earlier start: the stored stretch begins here
            coverage.fetched_to = None
        if final_end >= start and (coverage.fetched_to is None or final_end > coverage.fetched_to):
            coverage.fetched_to = final_end
        coverage.chunks_read += 1
        coverage.updated_at = utcnow()

    def _store(self, db: Any, series: Series, start: date, end: date, rows: list[MetricRow]) -> int:
        """Upserts one chunk's daily values (a day GA4 has no row for is 0); returns how many values changed."""
        values: dict[tuple[str, date], float] = {}
        day = start
        while day <= end:
            for metric in series.metrics:
                values[(metric, day)] = 0.0
            day += timedelta(days=1)
        for row in rows:
            raw = row.dimensions.get("date", "")
            try:
                when = datetime.strptime(raw, "%Y%m%d").date()
            except ValueError:
                log.warning("GA4 row with an unreadable date %r skipped", raw)
                continue
            for metric in series.metrics:
                if (metric, when) in values:
                    values[(metric, when)] += float(row.metrics.get(metric, 0) or 0)
        stored = {
            (metric, when): value
            for metric, when, value in db.execute(
                select(KpiSnapshotRow.metric, KpiSnapshotRow.day, KpiSnapshotRow.value).where(
                    KpiSnapshotRow.property_id == self.property_id, KpiSnapshotRow.filters == series.filters_key,
                    KpiSnapshotRow.metric.in_(series.metrics), KpiSnapshotRow.day >= start,
                    KpiSnapshotRow.day <= end))
        }
        changed = [{"property_id": self.property_id, "filters": series.filters_key, "metric": metric, "day": when,
                    "value": value, "fetched_at": utcnow()}
                   for (metric, when), value in values.items() if stored.get((metric, when)) != value]
        if changed:
            dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
            statement = dialect_insert(KpiSnapshotRow.__table__)
            statement = statement.on_conflict_do_update(
                index_elements=["property_id", "filters", "metric", "day"],
                set_={"value": statement.excluded.value, "fetched_at": statement.excluded.fetched_at})
            db.execute(statement, changed)
        return len(changed)

    def daily_values(self, series: Series, start: date, end: date) -> dict[date, dict[str, float]]:
        """The stored daily values of a series between two days (included)."""
        daily: dict[date, dict[str, float]] = defaultdict(dict)
        with session_scope(self.engine) as db:
            for metric, when, value in db.execute(
                select(KpiSnapshotRow.metric, KpiSnapshotRow.day, KpiSnapshotRow.value).where(
                    KpiSnapshotRow.property_id == self.property_id, KpiSnapshotRow.filters == series.filters_key,
                    KpiSnapshotRow.metric.in_(series.metrics), KpiSnapshotRow.day >= start,
                    KpiSnapshotRow.day <= end)):
                daily[when][metric] = value
        return dict(daily)

    # -- progress ------------------------------------------------------------------------------

    def progress_of(self, objective: Objective, today: date) -> Progress:
        """Computes an objective's progress from the stored snapshots, with the data up to yesterday."""
        expression = MetricExpression.parse(objective.metric)
        series = series_of(objective)
        period = objective.baseline_period()
        actual = self.daily_values(series, objective.start, objective.end)
        baseline = self.daily_values(series, *period) if period else {}
        if objective.baseline.value is not None:
            baseline_total = objective.baseline.value
        else:
            baseline_total = expression.evaluate(_sum_all(baseline))
        uplift = relative_target(objective.target, baseline_total)
        plan = Plan(start=objective.start, end=objective.end, expression=expression,
                    milestones=build_milestones(objective.start, objective.end, objective.milestones, uplift,
                                                objective.split),
                    on_track=objective.on_track, at_risk=objective.at_risk,
                    baseline_years_back=objective.baseline_years_back, baseline_value=objective.baseline.value,
                    increase=uplift >= 0)
        return compute_progress(plan, actual, baseline, today - timedelta(days=1))

    def _compute_objectives(self, today: date, result: KpiRunResult, read_through: dict[Series, date | None]) -> None:
        needed = self.needed_series(today)
        for index, objective in enumerate(self.config.objectives):
            series = series_of(objective)
            if series in needed and (read_through.get(series) is None or read_through[series] < needed[series][1]):
                result.objectives_incomplete.append(objective.key)  # the backfill has not reached yesterday yet
                continue
            if today <= objective.start:
                continue
            # One objective's bad data (a baseline of 0 under an absolute target, ...) must not stop the others:
            # it is recorded on that objective, and the run carries on.
            try:
                progress = self.progress_of(objective, today)
                with session_scope(self.engine) as db:
                    store_progress(db, objective.key, progress)
            except (OperationalError, InterfaceError):
                raise  # the database itself is unavailable: that fails the run, not one objective
            except Exception as exc:
                problem = f"objectives[{index}] ({objective.key}): {type(exc).__name__}: {exc}"
                result.objectives_failed[objective.key] = problem
                self._record_objective_problem(objective.key, problem)
                continue
            self._clear_objective_problem(objective.key)
            result.objectives_computed.append(objective.key)

    def _record_objective_problem(self, key: str, problem: str) -> None:
        """Stores the objective's problem; logs it once, when it appears or changes (not on every run)."""
        now, problem = utcnow(), problem[:2000]
        with session_scope(self.engine) as db:
            row = db.get(KpiObjectiveProblemRow, key)
            if row is not None and row.problem == problem:
                row.updated_at = now
                return
            log.error("KPI objective not computed: %s", problem, extra={"event": "failing", "objective": key})
            if row is None:
                db.add(KpiObjectiveProblemRow(objective_key=key, problem=problem, since=now, updated_at=now))
            else:
                row.problem, row.since, row.updated_at = problem, now, now

    def _clear_objective_problem(self, key: str) -> None:
        with session_scope(self.engine) as db:
            row = db.get(KpiObjectiveProblemRow, key)
            if row is not None:
                log.info("KPI objective %s computed again", key, extra={"event": "recovered", "objective": key})
                db.delete(row)

    # -- write-back to linked items --------------------------------------------------------------

    def plan_kpi_writes(self, source: SourceConfig) -> int:
        """Queues a KPI comment and/or the KPI text field for each linked item whose result changed materially
        (status, milestone, or attainment by more than kpi_change_threshold); returns the writes queued."""
        write_back = source.write_back
        if not write_back.enabled or not self.config.objectives:
            return 0
        field_owned = "kpi_result" in owned_fields(write_back)
        if not (write_back.kpi_comments or field_owned):
            return 0
        latest = latest_results(self.engine, self.config.objectives)
        if not latest:
            return 0
        names = {o.key: objective_names(o.key, o.name, o.aliases) for o in self.config.objectives}
        planned = 0
        now = utcnow()
        with session_scope(self.engine) as db:
            lock_source(db, source.name)  # the same lock as score planning: one planner per source at a time
            stored = {(row.external_id, row.objective_key): row for row in db.execute(
                select(KpiItemResultRow).where(KpiItemResultRow.source == source.name)).scalars()}
            pending_fields = {row.external_id: row for row in db.execute(
                select(OutboxRow).where(OutboxRow.source == source.name, OutboxRow.field == "kpi_result",
                                        OutboxRow.status.in_(("pending", "sending"))).order_by(OutboxRow.id)
            ).scalars()}
            items = db.execute(select(ItemRow.external_id, ItemRow.story, ItemRow.labels, ItemRow.status,
                                      ItemRow.remote_values).where(ItemRow.source == source.name))
            linked_now: set[tuple[str, str]] = set()
            new_rows: list[dict[str, Any]] = []
            for external_id, story, labels, status, remote_values in items:
                keys = [key for key in linked_objectives(story, labels, names) if key in latest]
                if status == "cancelled" or not keys:
                    continue
                item_changed = False
                for key in keys:
                    linked_now.add((external_id, key))
                    kpi = latest[key]
                    previous = stored.get((external_id, key))
                    if previous is not None and not materially_changed(previous, kpi,
                                                                       write_back.kpi_change_threshold):
                        continue
                    text = kpi_result_text(kpi, source.language)
                    values = _result_columns(kpi)
                    if previous is None:
                        db.add(KpiItemResultRow(source=source.name, external_id=external_id, objective_key=key,
                                                text=text, planned_at=now, **values))
                    else:
                        for name, value in values.items():
                            setattr(previous, name, value)
                        previous.text = text
                        previous.planned_at = now
                    item_changed = True
                    if write_back.kpi_comments:
                        new_rows.append(_outbox_row(source.name, external_id, "comment", text, now))
                        planned += 1
                if field_owned:
                    results = [latest[key] for key in keys]
                    if not item_changed:  # the field shows the results last planned, not today's numbers
                        results = [_stored_result(stored[(external_id, key)]) if (external_id, key) in stored
                                   else latest[key] for key in keys]
                    desired = kpi_field_text(results, source.language)
                    queued = pending_fields.get(external_id)
                    if same_text(desired, (remote_values or {}).get("kpi_result")):
                        if queued is not None and queued.status == "pending":
                            queued.status = "superseded"
                    elif queued is None or not same_text(desired, queued.value):
                        if queued is not None and queued.status == "pending":
                            queued.status = "superseded"
                        new_rows.append(_outbox_row(source.name, external_id, "kpi_result", desired, now))
                        planned += 1
            if new_rows:
                db.execute(insert(OutboxRow.__table__), new_rows)
            # An item no longer linked (KPI field changed) forgets its result: linking it again writes anew.
            gone = [row.id for (external_id, key), row in stored.items() if (external_id, key) not in linked_now]
            if gone:
                db.execute(delete(KpiItemResultRow).where(KpiItemResultRow.id.in_(gone)))
        return planned

    # -- reach from traffic ----------------------------------------------------------------------

    def _refresh_reach(self, today: date, result: KpiRunResult) -> set[str]:
        """Fills derived reach for items naming a page/channel/segment; returns the sources whose reach changed."""
        from connectors.ga4 import ReportSpec

        changed_sources: set[str] = set()
        for source in self.config.sources:
            reach = source.reach_from_ga4
            if reach is None:
                with session_scope(self.engine) as db:  # turned off: forget what was derived, and rescore
                    if db.execute(delete(KpiReachRow).where(KpiReachRow.source == source.name)).rowcount:
                        changed_sources.add(source.name)
                continue
            with session_scope(self.engine) as db:
                named = {
                    external_id: value
                    for external_id, story, labels, description in db.execute(
                        select(ItemRow.external_id, ItemRow.story, ItemRow.labels, ItemRow.description)
                        .where(ItemRow.source == source.name))
                    if (value := named_value(reach.names, story, labels, description,
                                             label_prefix=reach.label_prefix)) is not None
                }
            by_value: dict[str, float] = {}
            end = today - timedelta(days=1)
            start = today - timedelta(days=reach.days)
            if named:
                (rows,) = self.connector().run_reports([ReportSpec(
                    metrics=(reach.metric,), start_date=start, end_date=end, dimensions=(reach.dimension,),
                    filters=tuple(sorted(reach.dimension_filter.items())))])
                for row in rows:
                    value = row.dimensions.get(reach.dimension, "")
                    by_value[value] = by_value.get(value, 0.0) + float(row.metrics.get(reach.metric, 0) or 0)
            with session_scope(self.engine) as db:
                lock_source(db, source.name)
                stored = {row.external_id: row for row in db.execute(
                    select(KpiReachRow).where(KpiReachRow.source == source.name)).scalars()}
                for external_id, value in named.items():
                    number = match_dimension_value(value, by_value, kind=reach.names)
                    # No traffic recorded (a landing page not launched yet) is no reach, not a reach of 0 that
                    # would score the item 0 and rank it last; rescoring records the problem on the item.
                    row = stored.pop(external_id, None)
                    if row is None:
                        db.add(KpiReachRow(source=source.name, external_id=external_id, dimension=reach.dimension,
                                           named=value[:500], metric=reach.metric, days=reach.days, reach=number,
                                           as_of=end))
                        result.reach_changed += 1
                        changed_sources.add(source.name)
                        continue
                    if (row.reach, row.named, row.metric, row.days, row.dimension) != (
                            number, value[:500], reach.metric, reach.days, reach.dimension):
                        result.reach_changed += 1
                        changed_sources.add(source.name)
                    row.reach, row.named, row.metric, row.days, row.dimension = (
                        number, value[:500], reach.metric, reach.days, reach.dimension)
                    row.as_of = end
                    row.computed_at = utcnow()
                if stored:  # items that no longer name a page
                    db.execute(delete(KpiReachRow).where(KpiReachRow.id.in_([r.id for r in stored.values()])))
                    changed_sources.add(source.name)
        return changed_sources

    # -- job bookkeeping -------------------------------------------------------------------------

    def _ensure_row(self) -> None:
        try:
            with session_scope(self.engine) as db:
                if db.get(KpiJobRow, JOB) is None:
                    db.add(KpiJobRow(name=JOB))
        except IntegrityError:
            pass  # another replica inserted it at the same moment: it is there either way

    def reread_from(self, day: date) -> int:
        """Forgets that the days from `day` on are final, so the next run reads them again (a GA4 correction
        older than the lookback); returns how many series were reset."""
        with session_scope(self.engine) as db:
            reset = 0
            for coverage in db.execute(select(KpiCoverageRow).where(
                    KpiCoverageRow.property_id == self.property_id)).scalars():
                if coverage.fetched_to is not None and coverage.fetched_to >= day:
                    if coverage.fetched_from is not None and day <= coverage.fetched_from:
                        coverage.fetched_from = coverage.fetched_to = None
                    else:
                        coverage.fetched_to = day - timedelta(days=1)
                    reset += 1
            return reset

    def _acquire_lease(self, owner: str, *, min_gap: float | None) -> bool:
        now = utcnow()
        free = (KpiJobRow.lease_expires_at.is_(None)) | (KpiJobRow.lease_expires_at < now)
        query = update(KpiJobRow).where(KpiJobRow.name == JOB, free)
        if min_gap is not None:
            query = query.where(KpiJobRow.last_run_started_at.is_(None)
                                | (KpiJobRow.last_run_started_at < now - timedelta(seconds=min_gap)))
        with session_scope(self.engine) as db:
            done = db.execute(query.values(
                lease_owner=owner, last_run_started_at=now,
                lease_expires_at=now + timedelta(seconds=self._lease_seconds())))
            return bool(done.rowcount)

    def _lease_seconds(self) -> float:
        return float(self.config.lease_seconds)

    def _release_lease(self, owner: str) -> None:
        with session_scope(self.engine) as db:
            db.execute(update(KpiJobRow).where(KpiJobRow.name == JOB, KpiJobRow.lease_owner == owner)
                       .values(lease_owner=None, lease_expires_at=None))

    def _record_success(self, result: KpiRunResult) -> None:
        with session_scope(self.engine) as db:
            row = db.get(KpiJobRow, JOB)
            assert row is not None
            if row.consecutive_failures:
                log.info("KPI job recovered after %d failed runs", row.consecutive_failures,
                         extra={"event": "recovered"})
            row.state = SourceState.ACTIVE
            row.consecutive_failures = 0
            row.last_success_at = utcnow()
            row.resume_after = result.resume_after
            row.last_run_calls = result.calls
            row.last_error = None if result.status == "succeeded" else (
                f"GA4 quota exhausted; resumes after {result.resume_after}")

    def _record_failure(self, exc: Exception) -> None:
        state = SourceState.NEEDS_CREDENTIALS if isinstance(exc, AuthError) else (
            SourceState.PAUSED if isinstance(exc, FatalError) else SourceState.FAILING)
        if isinstance(exc, FatalError):
            self.close()
        with session_scope(self.engine) as db:
            row = db.get(KpiJobRow, JOB)
            assert row is not None
            if row.consecutive_failures == 0:
                log.error("KPI job failed: %s", exc, extra={"event": "failing"})
            row.state = state
            row.consecutive_failures += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            row.last_error_at = utcnow()


def store_progress(db: Any, objective_key: str, progress: Progress) -> None:
    """Upserts the objective's progress for its date (one row per objective and day of data)."""
    current = progress.current
    values = {
        "milestone": current.milestone.label, "milestone_start": current.milestone.start,
        "milestone_end": current.milestone.end, "milestone_uplift": current.milestone.uplift,
        "milestone_actual": current.actual, "milestone_expected": current.expected_to_date,
        "milestone_status": current.status, "milestone_attainment": current.attainment,
        "actual": progress.actual, "expected": progress.expected_to_date, "attainment": progress.attainment,
        "status": progress.status, "expected_total": progress.expected_total, "projection": progress.projection,
        "milestones": [{
            "label": m.milestone.label, "start": m.milestone.start.isoformat(), "end": m.milestone.end.isoformat(),
            "uplift": m.milestone.uplift, "actual": m.actual, "expected_to_date": m.expected_to_date,
            "expected_total": m.expected_total, "attainment": m.attainment, "status": m.status,
            "complete": m.complete} for m in progress.milestones],
        "computed_at": utcnow(),
    }
    row = db.execute(select(KpiProgressRow).where(KpiProgressRow.objective_key == objective_key,
                                                  KpiProgressRow.as_of == progress.as_of)).scalar_one_or_none()
    if row is None:
        db.add(KpiProgressRow(objective_key=objective_key, as_of=progress.as_of, **values))
    else:
        for name, value in values.items():
            setattr(row, name, value)


def latest_results(engine: Engine, objectives: list[Objective]) -> dict[str, KpiResult]:
    """The latest computed result of each objective, in the shape written to items."""
    by_key = {o.key: o for o in objectives}
    results: dict[str, KpiResult] = {}
    with session_scope(engine) as db:
        for key, objective in by_key.items():
            row = db.execute(select(KpiProgressRow).where(KpiProgressRow.objective_key == key)
                             .order_by(KpiProgressRow.as_of.desc()).limit(1)).scalar_one_or_none()
            if row is not None:
                results[key] = result_of(objective, row)
    return results


def result_of(objective: Objective, row: KpiProgressRow) -> KpiResult:
    return KpiResult(
        objective_key=objective.key, objective_name=objective.name, milestone=row.milestone,
        milestone_start=row.milestone_start, milestone_end=row.milestone_end, milestone_target=row.milestone_uplift,
        milestone_actual=row.milestone_actual, milestone_expected=row.milestone_expected,
        milestone_status=row.milestone_status, actual=row.actual, expected=row.expected, status=row.status,
        expected_total=row.expected_total, projection=row.projection, as_of=row.as_of,
        milestone_attainment=row.milestone_attainment, attainment=row.attainment)


def attainment_of(result: KpiResult) -> float | None:
    """The milestone's attainment as the progress computed it (expected / actual for a decrease target)."""
    return result.milestone_attainment


def materially_changed(previous: KpiItemResultRow, result: KpiResult, threshold: float) -> bool:
    """A new write is due when a status or the milestone changed, or the milestone's attainment (actual over
    expected to date; expected over actual for a target that lowers the metric) moved by more than `threshold`
    of itself (0.05 = 5 %)."""
    if (previous.milestone, previous.status, previous.milestone_status) != (
            result.milestone, result.status, result.milestone_status):
        return True
    new, old = attainment_of(result), previous.attainment
    if new is None or old is None:
        return new != old
    return abs(new - old) > threshold * abs(old)


def _result_columns(result: KpiResult) -> dict[str, Any]:
    return {"milestone": result.milestone, "status": result.status, "milestone_status": result.milestone_status,
            "attainment": attainment_of(result), "result": _result_json(result)}


def _result_json(result: KpiResult) -> dict[str, Any]:
    data = dict(result.__dict__)
    for name in ("milestone_start", "milestone_end", "as_of"):
        data[name] = data[name].isoformat()
    return data


def _stored_result(row: KpiItemResultRow) -> KpiResult:
    data = dict(row.result)
    for name in ("milestone_start", "milestone_end", "as_of"):
        data[name] = date.fromisoformat(data[name])
    return KpiResult(**data)


def same_text(desired: str, held: Any) -> bool:
    """Compares texts ignoring whitespace: a tool's rich text (Jira's ADF) gives back blank lines of its own."""
    return isinstance(held, str) and desired.split() == held.split()


def _outbox_row(source: str, external_id: str, field_name: str, value: Any, now: datetime) -> dict[str, Any]:
    return {"source": source, "external_id": external_id, "field": field_name, "value": value, "status": "pending",
            "attempts": 0, "created_at": now, "next_attempt_at": now}


def _sum_all(daily: dict[date, dict[str, float]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for values in daily.values():
        for metric, value in values.items():
            sums[metric] = sums.get(metric, 0.0) + value
    return sums


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

