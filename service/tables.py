"""The database tables (SQLModel): items, sources and their cursors, sync runs, the write outbox, and KPIs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class SourceState:
    ACTIVE = "active"
    FAILING = "failing"  # recent runs failed for a retriable reason; it keeps trying on schedule
    NEEDS_CREDENTIALS = "needs_credentials"  # 401/403: paused until the operator fixes credentials
    PAUSED = "paused"  # a fatal error (config, permissions); paused until the operator acts


class SourceRow(SQLModel, table=True):
    """One configured source, its cursor and its health."""

    __tablename__ = "sources"

    name: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)
    state: str = Field(default=SourceState.ACTIVE, max_length=32)
    cursor: str | None = Field(default=None, sa_column=Column(Text))
    cursor_updated_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    runs_since_reconcile: int = 0
    last_reconcile_at: datetime | None = None
    items_count: int = 0
    # Replicas: only the holder of an unexpired lease runs this source's sync.
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = None
    last_run_started_at: datetime | None = None


class ItemRow(SQLModel, table=True):
    """One backlog item as last read from its tool, with its computed score and rank."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_items_source_external_id"),
        Index("ix_items_source_rank", "source", "rank"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64, index=True)
    external_id: str = Field(max_length=128)
    key: str | None = Field(default=None, max_length=128)
    url: str | None = Field(default=None, sa_column=Column(Text))
    title: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    item_type: str = Field(max_length=32, index=True)
    status: str = Field(max_length=32, index=True)
    raw_status: str | None = Field(default=None, max_length=255)
    assignee: str | None = Field(default=None, max_length=255)
    labels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    sprint: str | None = Field(default=None, max_length=255)
    due_date: date | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    container: str | None = Field(default=None, max_length=255)
    story: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    inputs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # computed
    score: float | None = None
    method: str | None = Field(default=None, max_length=16)
    rank: int | None = None
    quadrant: str | None = Field(default=None, max_length=16)
    score_problems: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # sync bookkeeping
    content_hash: str = Field(max_length=64)
    remote_values: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    synced_at: datetime = Field(default_factory=utcnow)


class SyncRun(SQLModel, table=True):
    """One run of a source's sync, with what it did and how it ended."""

    __tablename__ = "sync_runs"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64, index=True)
    mode: str = Field(max_length=16)  # full | incremental | reconcile
    trigger: str = Field(max_length=16)  # schedule | api | cli | webhook | demo
    status: str = Field(default="running", max_length=16)  # running | succeeded | failed
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    pages: int = 0
    items_seen: int = 0
    items_changed: int = 0
    items_removed: int = 0
    items_with_problems: int = 0
    writes_planned: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))


class OutboxRow(SQLModel, table=True):
    """A planned write of one owned field to one item; drained by the outbox worker."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64, index=True)
    external_id: str = Field(max_length=128)
    field: str = Field(max_length=32)  # score | rank | kpi_result | comment | native_rank
    value: Any = Field(default=None, sa_column=Column(JSON))
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | failed | superseded
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class InboxRow(SQLModel, table=True):
    """A verified webhook delivery, stored before it is acknowledged and processed once afterwards."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("source", "delivery_id", name="uq_inbox_source_delivery"),
        Index("ix_inbox_status_received", "status", "received_at"),
        Index("ix_inbox_item", "source", "item_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    delivery_id: str = Field(max_length=200)
    item_id: str | None = Field(default=None, max_length=128)  # the one item it is about, for debouncing
    received_at: datetime = Field(default_factory=utcnow)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | processing | done | ignored | failed
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = None
    processed_at: datetime | None = None
    outcome: str | None = Field(default=None, sa_column=Column(Text))


class WriteLogRow(SQLModel, table=True):
    """A write we made (item, field, value, time): events that only echo these are not processed again."""

    __tablename__ = "write_log"
    __table_args__ = (Index("ix_write_log_item", "source", "external_id", "written_at"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    external_id: str = Field(max_length=128)
    field: str = Field(max_length=32)
    value: Any = Field(default=None, sa_column=Column(JSON))
    written_at: datetime = Field(default_factory=utcnow)


class WebhookSecretRow(SQLModel, table=True):
    """A secret a tool handed us during a webhook handshake (Asana's X-Hook-Secret), per source."""

    __tablename__ = "webhook_secrets"

    source: str = Field(primary_key=True, max_length=64)
    secret: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class KpiJobRow(SQLModel, table=True):
    """The KPI job's health and its lease: one run at a time across replicas, once per tick."""

    __tablename__ = "kpi_job"

    name: str = Field(primary_key=True, max_length=32)  # "kpi"
    state: str = Field(default=SourceState.ACTIVE, max_length=32)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = None
    last_run_started_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    resume_after: datetime | None = None  # GA4 quota ran low: no reads before this
    last_run_calls: int = 0


class KpiSnapshotRow(SQLModel, table=True):
    """One GA4 metric's value on one day for one dimension filter, upserted as GA4 revises recent days."""

    __tablename__ = "kpi_snapshots"
    __table_args__ = (UniqueConstraint("property_id", "filters", "metric", "day", name="uq_kpi_snapshot"),)

    id: int | None = Field(default=None, primary_key=True)
    property_id: str = Field(max_length=32)
    filters: str = Field(max_length=500)  # canonical "dimension=value&..." ("" for none)
    metric: str = Field(max_length=100)
    day: date
    value: float
    fetched_at: datetime = Field(default_factory=utcnow)


class KpiCoverageRow(SQLModel, table=True):
    """How far a series (filter and metrics) is stored as final: the backfill resumes after fetched_to."""

    __tablename__ = "kpi_coverage"
    __table_args__ = (UniqueConstraint("property_id", "filters", "metrics", name="uq_kpi_coverage"),)

    id: int | None = Field(default=None, primary_key=True)
    property_id: str = Field(max_length=32)
    filters: str = Field(max_length=500)
    metrics: str = Field(max_length=500)  # comma-separated, sorted
    fetched_from: date | None = None
    fetched_to: date | None = None  # days up to here are stored and final (older than the lookback)
    chunks_read: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class KpiProgressRow(SQLModel, table=True):
    """An objective's progress as computed with the data up to one day: the series the API shows."""

    __tablename__ = "kpi_progress"
    __table_args__ = (UniqueConstraint("objective_key", "as_of", name="uq_kpi_progress"),)

    id: int | None = Field(default=None, primary_key=True)
    objective_key: str = Field(max_length=64, index=True)
    as_of: date
    milestone: str = Field(max_length=16)
    milestone_start: date
    milestone_end: date
    milestone_uplift: float
    milestone_actual: float
    milestone_expected: float
    milestone_status: str = Field(max_length=16)
    actual: float
    expected: float
    status: str = Field(max_length=16)
    expected_total: float
    projection: float
    milestones: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    computed_at: datetime = Field(default_factory=utcnow)
    # As computed by service.kpi.progress (inverted for a target that lowers the metric): the one source of
    # the ratio the API and the written text show. None before the period starts (and on rows older than 0005).
    attainment: float | None = None
    milestone_attainment: float | None = None


class KpiItemResultRow(SQLModel, table=True):
    """The KPI result last planned for one item and objective: a new write only when it changes materially."""

    __tablename__ = "kpi_item_results"
    __table_args__ = (UniqueConstraint("source", "external_id", "objective_key", name="uq_kpi_item_result"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    external_id: str = Field(max_length=128)
    objective_key: str = Field(max_length=64)
    milestone: str = Field(max_length=16)
    status: str = Field(max_length=16)
    milestone_status: str = Field(max_length=16)
    attainment: float | None = None
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    planned_at: datetime = Field(default_factory=utcnow)


class KpiReachRow(SQLModel, table=True):
    """An item's RICE reach derived from GA4 traffic to the page (channel, segment) it names."""

    __tablename__ = "kpi_reach"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_kpi_reach"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    external_id: str = Field(max_length=128)
    dimension: str = Field(max_length=100)
    named: str = Field(max_length=500)  # the page path, channel or segment the item names
    metric: str = Field(max_length=100)
    days: int
    reach: float | None  # None: GA4 had no traffic for it (a page not launched yet): no reach, not a reach of 0
    as_of: date
    computed_at: datetime = Field(default_factory=utcnow)


class KpiObjectiveProblemRow(SQLModel, table=True):
    """Why the KPI job could not compute an objective on its last run (bad data, e.g. a baseline of 0); the
    other objectives are computed regardless. Removed once the objective computes again."""

    __tablename__ = "kpi_objective_problems"

    objective_key: str = Field(primary_key=True, max_length=64)
    problem: str = Field(sa_column=Column(Text, nullable=False))
    since: datetime = Field(default_factory=utcnow)  # when this problem first appeared
    updated_at: datetime = Field(default_factory=utcnow)
