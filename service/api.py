"""The HTTP face of the daemon: /health and /ready, admin routes under /api behind a bearer token."""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.config import AppConfig, Settings
from service.db import NotMigratedError, check_migrated
from service.inbox import IntakeWriter
from service.logs import correlation_id
from service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from service.metrics import Metrics
from service.scheduler import Daemon
from service.sync import SyncService
from service.tables import ItemRow, OutboxRow, SourceRow, SyncRun
from service.webhooks import router as webhooks_router

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
log = logging.getLogger("backlog_sync.api")


# --- response models -------------------------------------------------------------------------------


class ItemPublic(BaseModel):
    source: str
    external_id: str
    key: str | None
    url: str | None
    title: str
    item_type: str
    status: str
    raw_status: str | None
    assignee: str | None
    labels: list[str]
    sprint: str | None
    due_date: date | None
    score: float | None
    method: str | None
    rank: int | None
    quadrant: str | None
    problem_count: int


class ItemDetail(ItemPublic):
    description: str | None
    container: str | None
    story: dict[str, Any]
    inputs: dict[str, Any]
    problems: list[dict[str, Any]]
    created_at: datetime | None
    updated_at: datetime | None
    synced_at: datetime


class ItemsPublic(BaseModel):
    data: list[ItemPublic]
    count: int


class SourcePublic(BaseModel):
    name: str
    kind: str
    state: str
    needs_credentials: bool
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_failures: int
    items_count: int
    cursor_updated_at: datetime | None
    pending_writes: int


class SyncRunPublic(BaseModel):
    id: int
    source: str
    mode: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    pages: int
    items_seen: int
    items_changed: int
    items_removed: int
    items_with_problems: int
    writes_planned: int
    error: str | None


class SyncRunsPublic(BaseModel):
    data: list[SyncRunPublic]
    count: int


class SyncAccepted(BaseModel):
    source: str
    mode: str
    status: Literal["queued"]


class Health(BaseModel):
    status: str
    detail: str | None = None


class MilestonePublic(BaseModel):
    label: str
    start: date
    end: date
    uplift: float
    actual: float
    expected_to_date: float
    expected_total: float
    attainment: float | None
    status: str
    complete: bool


class ObjectivePublic(BaseModel):
    key: str
    name: str
    owner: str
    metric: str
    dimension_filter: dict[str, str]
    target: str | float
    start: date
    end: date
    milestones: str
    split: str
    as_of: date | None
    status: str | None
    actual: float | None
    expected_to_date: float | None
    attainment: float | None
    expected_total: float | None
    projection: float | None
    current_milestone: MilestonePublic | None
    computed_at: datetime | None
    problem: str | None = None  # why the last run could not compute it (the progress shown is older, if any)


class ProgressPoint(BaseModel):
    as_of: date
    milestone: str
    milestone_actual: float
    milestone_expected: float
    milestone_status: str
    actual: float
    expected: float
    status: str
    projection: float


class LinkedItem(BaseModel):
    source: str
    external_id: str
    key: str | None
    title: str
    url: str | None
    status: str
    written_status: str | None
    written_milestone: str | None
    written_text: str | None
    planned_at: datetime | None  # when this result was planned (queued in the outbox)
    sent_at: datetime | None  # when its write reached the tool; None while it waits in the outbox


class ObjectiveDetail(ObjectivePublic):
    milestones_progress: list[MilestonePublic]
    series: list[ProgressPoint]
    linked_items: list[LinkedItem]


def _item_public(row: ItemRow) -> dict[str, Any]:
    return {**row.model_dump(), "problem_count": len(row.problems or []) + len(row.score_problems or [])}


def _item_detail(row: ItemRow) -> dict[str, Any]:
    data = _item_public(row)
    data["problems"] = list(row.problems or []) + list(row.score_problems or [])
    return data


# --- dependencies ----------------------------------------------------------------------------------


def get_db(request: Request) -> Any:
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def require_admin(request: Request) -> None:
    """Checks the bearer token against ADMIN_TOKEN in constant time."""
    expected: str = request.app.state.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied or not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid admin bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})


def refuse_nul_bytes(request: Request) -> None:
    """A NUL byte is never part of a source, key or filter (and PostgreSQL refuses it in text): 422."""
    raw = request.url.path + "?" + str(request.url.query)
    if "\x00" in raw or "%00" in raw.lower() or any("\x00" in v for v in request.path_params.values()):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "parameters must not contain NUL bytes")


admin = APIRouter(prefix="/api", dependencies=[Depends(require_admin), Depends(refuse_nul_bytes)], tags=["admin"])


@admin.get("/items", response_model=ItemsPublic)
def list_items(
    db: SessionDep,
    source: str | None = None,
    item_type: Annotated[str | None, Query(alias="type")] = None,
    item_status: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Any:
    """Lists items sorted by rank (unranked last), filtered by source, type and status."""
    query = select(ItemRow)
    if source:
        query = query.where(ItemRow.source == source)
    if item_type:
        query = query.where(ItemRow.item_type == item_type)
    if item_status:
        query = query.where(ItemRow.status == item_status)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.execute(
        query.order_by(ItemRow.rank.is_(None), ItemRow.rank, ItemRow.source, ItemRow.external_id)
        .offset(offset).limit(limit)
    ).scalars()
    return {"data": [_item_public(r) for r in rows], "count": count}


@admin.get("/items/{source}/{external_id}", response_model=ItemDetail)
def get_item(source: str, external_id: str, db: SessionDep) -> Any:
    """Gets one item with its story, inputs and problems."""
    row = db.execute(
        select(ItemRow).where(ItemRow.source == source, ItemRow.external_id == external_id)
    ).scalar_one_or_none()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no item {external_id!r} in source {source!r}")
    return _item_detail(row)


@admin.get("/sources", response_model=list[SourcePublic])
def list_sources(request: Request, db: SessionDep) -> Any:
    """Lists configured sources with their state, last success and last error."""
    config: AppConfig = request.app.state.config
    rows = {r.name: r for r in db.execute(select(SourceRow)).scalars()}
    pending = dict(db.execute(
        select(OutboxRow.source, func.count()).where(OutboxRow.status.in_(("pending", "sending")))
        .group_by(OutboxRow.source)
    ).all())
    result = []
    for source in config.sources:
        row = rows.get(source.name) or SourceRow(name=source.name, kind=source.kind)
        result.append({**row.model_dump(), "needs_credentials": row.state == "needs_credentials",
                       "pending_writes": pending.get(source.name, 0)})
    return result


@admin.post("/sources/{name}/sync", response_model=SyncAccepted, status_code=status.HTTP_202_ACCEPTED)
def trigger_sync(name: str, request: Request,
                 mode: Literal["incremental", "full", "reconcile"] = "incremental") -> Any:
    """Queues a sync of one source now (a paused source is retried, e.g. after new credentials)."""
    if request.app.state.config.source(name) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no source named {name!r}")
    request.app.state.daemon.trigger_sync(name, mode=mode)
    return {"source": name, "mode": mode, "status": "queued"}


@admin.get("/runs", response_model=SyncRunsPublic)
def list_runs(
    db: SessionDep,
    source: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Any:
    """Lists sync runs, newest first, with their counts and errors."""
    query = select(SyncRun)
    if source:
        query = query.where(SyncRun.source == source)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.execute(query.order_by(SyncRun.id.desc()).offset(offset).limit(limit)).scalars()
    return {"data": [r.model_dump() for r in rows], "count": count}


# --- the app ---------------------------------------------------------------------------------------


@admin.get("/objectives", response_model=list[ObjectivePublic])
def list_objectives(request: Request, db: SessionDep) -> Any:
    """Lists the KPI objectives, each with its current milestone and status."""
    from service.kpi.views import objective_summaries

    return objective_summaries(db, request.app.state.config)


@admin.get("/objectives/{key}", response_model=ObjectiveDetail)
def get_objective(key: str, request: Request, db: SessionDep) -> Any:
    """Shows one objective: its milestones, the progress series and the items linked to it."""
    from service.kpi.views import objective_detail

    detail = objective_detail(db, request.app.state.config, key)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no objective with key {key!r}")
    return detail


def create_app(*, settings: Settings, config: AppConfig, engine: Engine, start_scheduler: bool = True) -> FastAPI:
    """Builds the daemon's app; the lifespan refuses an unmigrated database and runs the scheduler."""
    admin_token = settings.checked_admin_token()
    metrics = Metrics(engine)
    sync_service = SyncService(engine=engine, config=config, on_finished=metrics.sync_finished)
    daemon = Daemon(sync_service=sync_service, on_webhook_processed=metrics.webhook_processed)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        check_migrated(engine)  # refuses to start, naming the command to run
        sync_service.ensure_source_rows()
        if start_scheduler:
            daemon.start()
        try:
            yield
        finally:
            app.state.intake.stop()
            daemon.stop()

    app = FastAPI(
        title="backlog-sync", version="0.1.0", lifespan=lifespan,
        description="Admin API of backlog-sync. Every /api route needs `Authorization: Bearer <ADMIN_TOKEN>`.",
    )
    app.state.engine = engine
    app.state.config = config
    app.state.settings = settings
    app.state.admin_token = admin_token
    app.state.sync = sync_service
    app.state.daemon = daemon
    app.state.intake = IntakeWriter(engine)
    app.state.metrics = metrics

    @app.get("/metrics", tags=["probes"], response_class=PlainTextResponse)
    def prometheus_metrics() -> Any:
        """Exposes the metrics in Prometheus text format."""
        return PlainTextResponse(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/health", response_model=Health, tags=["probes"])
    def health() -> Any:
        """Says the process is up."""
        return {"status": "ok"}

    @app.get("/ready", response_model=Health, tags=["probes"], responses={503: {"model": Health}})
    def ready() -> Any:
        """Says the database is reachable and migrated."""
        try:
            check_migrated(engine)
        except NotMigratedError as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc)}, status_code=503)
        except Exception as exc:  # database unreachable
            return JSONResponse({"status": "not ready", "detail": f"database unreachable: {type(exc).__name__}"},
                                status_code=503)
        return {"status": "ready"}

    app.include_router(admin)
    app.include_router(webhooks_router)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Any:
        """Every log line written while handling a request carries its id (the caller's X-Request-ID or ours)."""
        supplied = request.headers.get("x-request-id", "")
        rid = supplied if _REQUEST_ID.fullmatch(supplied) else f"req-{uuid.uuid4().hex[:12]}"
        token = correlation_id.set(rid)
        try:
            response = await call_next(request)
        finally:
            correlation_id.reset(token)
        response.headers["X-Request-ID"] = rid
        return response
    return app
