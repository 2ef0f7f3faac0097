"""The sync engine: pull pages from a tool, map them, upsert them with the cursor in one transaction,
score and rank, and plan the writes that differ from what the tool holds."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from connectors.base import (
    AuthError,
    ConnectorError,
    FatalError,
    Page,
    RetriableError,
    RetryPolicy,
    WorkItemSource,
)
from mappings.model import OWNED_FIELDS, BacklogItem, hash_payload
from service.config import AppConfig, SourceConfig
from service.db import execute_many, session_scope
from service.heap import long_lived_heap_frozen
from service.logs import correlation_id
from service.outbox import WORKER_ID
from service.planning import plan_writes
from service.registry import profile_for, tool_for
from service.scoring_job import rescore_source
from service.tables import ItemRow, OutboxRow, SourceRow, SourceState, SyncRun, WriteLogRow, utcnow

log = logging.getLogger("backlog_sync.sync")

ProgressCallback = Callable[[int], None]  # told the number of items seen so far




class SourceUnavailable(Exception):
    """The source is paused (credentials or a fatal error) and a scheduled run was skipped."""


class SourceBusy(SourceUnavailable):
    """Another run (in this process or another replica) holds the source's lease, or ran this tick."""


@dataclass
class SyncResult:
    run_id: int
    status: str
    items_seen: int
    items_changed: int
    items_removed: int
    writes_planned: int
    error: str | None = None


def item_to_row_values(item: BacklogItem) -> dict[str, Any]:
    """Returns the column values of an ItemRow for a mapped item (computed columns left alone)."""
    # One dump serves the JSON columns and the content hash: dumping the item is most of this function's cost.
    dumped = item.hashed_values()
    return {
        "key": item.key,
        "url": item.url,
        "title": item.title[:10_000],
        "description": item.description,
        "item_type": item.item_type.value,
        "status": item.status.value,
        "raw_status": (item.raw_status or None) and item.raw_status[:255],
        "assignee": (item.assignee or None) and item.assignee[:255],
        "labels": item.labels,
        "sprint": (item.sprint or None) and item.sprint[:255],
        "due_date": item.due_date,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "container": (item.container or None) and item.container[:255],
        "story": dumped["story"],
        "inputs": dumped["inputs"],
        "problems": dumped["problems"],
        "extra": item.extra,
        "content_hash": hash_payload(dumped),
        "remote_values": item.remote_values,
    }


class SyncService:
    """Runs syncs of configured sources against the database."""

    def __init__(
        self,
        *,
        engine: Engine,
        config: AppConfig,
        policy: RetryPolicy | None = None,
        connector_factory: Callable[[SourceConfig], WorkItemSource] | None = None,
        on_finished: Callable[[str, str, str, float, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.policy = policy or RetryPolicy()
        self._factory = connector_factory
        self._on_finished = on_finished  # (source, mode, status, seconds, items) for metrics
        self._connectors: dict[str, WorkItemSource] = {}
        self._contexts: dict[str, dict[str, Any]] = {}

    # -- connectors ---------------------------------------------------------------------------

    def source_config(self, name: str) -> SourceConfig:
        source = self.config.source(name)
        if source is None:
            raise KeyError(f"no source named {name!r} in the config")
        return source

    def connector(self, name: str) -> WorkItemSource:
        """Gets (or builds) the connector of a source; reused between runs for its session and limiter."""
        if name not in self._connectors:
            source = self.source_config(name)
            if self._factory is not None:
                self._connectors[name] = self._factory(source)
            else:
                self._connectors[name] = tool_for(source.kind).build(source, self.policy)
        return self._connectors[name]

    def context(self, name: str, *, refresh: bool = False) -> dict[str, Any]:
        """Gets the tool metadata the mapping needs (custom field names, lists...), read once per run."""
        if refresh or name not in self._contexts:
            self._contexts[name] = self.connector(name).describe()
        return self._contexts[name]

    def forget_connector(self, name: str) -> None:
        connector = self._connectors.pop(name, None)
        self._contexts.pop(name, None)
        if connector is not None:
            try:
                connector.close()
            except Exception:  # closing a broken connector must not hide the real error
                log.debug("closing connector of %s failed", name, exc_info=True)

    def close(self) -> None:
        for name in list(self._connectors):
            self.forget_connector(name)

    # -- runs ---------------------------------------------------------------------------------

    def ensure_source_rows(self) -> None:
        """Creates a sources row for every configured source (kind changes are refused)."""
        for attempt in (1, 2):
            try:
                with session_scope(self.engine) as db:
                    for source in self.config.sources:
                        row = db.get(SourceRow, source.name)
                        if row is None:
                            db.add(SourceRow(name=source.name, kind=source.kind))
                        elif row.kind != source.kind:
                            raise FatalError(
                                f"source {source.name!r} was a {row.kind} source and is now configured as "
                                f"{source.kind}; give it a new name instead"
                            )
                return
            except IntegrityError:
                # Replicas starting together insert the same rows at the same moment: the other one's are there
                # now, so the second pass only checks their kinds.
                if attempt == 2:
                    raise

    def run(
        self,
        name: str,
        *,
        mode: str = "incremental",
        trigger: str = "cli",
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Runs one sync of a source. Scheduled runs skip paused sources; manual runs retry them."""
        source = self.source_config(name)
        self.ensure_source_rows()
        with session_scope(self.engine) as db:
            state = db.get(SourceRow, name)
            assert state is not None
            if trigger == "schedule" and state.state in (SourceState.NEEDS_CREDENTIALS, SourceState.PAUSED):
                raise SourceUnavailable(f"{name} is {state.state}: {state.last_error}")
        # One sync per source at a time across replicas; a scheduled tick runs once, whoever takes it.
        min_gap = source.schedule.interval_seconds * 0.8 if trigger == "schedule" else None
        # The lease belongs to this run, not to the process: two threads of one replica exclude each other too.
        owner = f"{WORKER_ID[:55]}:{uuid.uuid4().hex[:8]}"
        if not self._acquire_lease(name, owner, min_gap=min_gap):
            raise SourceBusy(f"{name} is being synced by another run, or was synced this tick")
        try:
            with long_lived_heap_frozen():
                return self._run_leased(name, source, mode=mode, trigger=trigger, progress=progress)
        finally:
            self._release_lease(name, owner)

    def _acquire_lease(self, name: str, owner: str, *, min_gap: float | None) -> bool:
        now = utcnow()
        free = (SourceRow.lease_expires_at.is_(None)) | (SourceRow.lease_expires_at < now)
        query = update(SourceRow).where(SourceRow.name == name, free)
        if min_gap is not None:
            query = query.where(
                SourceRow.last_run_started_at.is_(None)
                | (SourceRow.last_run_started_at < now - timedelta(seconds=min_gap))
            )
        with session_scope(self.engine) as db:
            result = db.execute(query.values(lease_owner=owner, last_run_started_at=now,
                                             lease_expires_at=now + timedelta(seconds=self.config.lease_seconds)))
            return bool(result.rowcount)

    def _release_lease(self, name: str, owner: str) -> None:
        with session_scope(self.engine) as db:
            db.execute(update(SourceRow).where(SourceRow.name == name, SourceRow.lease_owner == owner)
                       .values(lease_owner=None, lease_expires_at=None))

    def _run_leased(self, name: str, source: SourceConfig, *, mode: str, trigger: str,
                    progress: ProgressCallback | None) -> SyncResult:
        with session_scope(self.engine) as db:
            state = db.get(SourceRow, name)
            assert state is not None
            if mode == "incremental" and state.runs_since_reconcile + 1 >= source.schedule.reconcile_every:
                mode = "reconcile"
            # We hold the lease, so a run still marked "running" belongs to a process that died mid-sync.
            for stale in db.execute(select(SyncRun).where(SyncRun.source == name,
                                                          SyncRun.status == "running")).scalars():
                stale.status = "failed"
                stale.finished_at = utcnow()
                stale.error = "interrupted: the process running it stopped; the next run resumed from its cursor"
                log.warning("sync run %s of %s was interrupted (its process stopped); resuming from the cursor",
                            stale.id, name, extra={"source": name})
            run = SyncRun(source=name, mode=mode, trigger=trigger)
            db.add(run)
            db.flush()
            run_id = run.id
            cursor = state.cursor
        assert run_id is not None
        token = correlation_id.set(f"sync-{name}-{run_id}-{uuid.uuid4().hex[:6]}")
        started = time.monotonic()
        run_started = utcnow()
        counts = {"pages": 0, "items_seen": 0, "items_changed": 0, "items_removed": 0,
                  "items_with_problems": 0, "writes_planned": 0}
        try:
            self._pull(name, source, cursor=None if mode == "full" else cursor, full=mode == "full",
                       run_id=run_id, counts=counts, progress=progress)
            if mode in ("full", "reconcile"):
                counts["items_removed"] += self._reconcile(name, run_started)
            rescore_source(self.engine, source)
            counts["writes_planned"] = plan_writes(self.engine, source)
        except Exception as exc:  # every failure ends the run with a clear reason
            self._report(name, mode, "failed", time.monotonic() - started, counts["items_seen"])
            try:
                return self._fail(name, run_id, counts, exc)
            finally:
                correlation_id.reset(token)
        elapsed = time.monotonic() - started
        try:
            self._succeed(name, run_id, counts, mode)
            self._report(name, mode, "succeeded", elapsed, counts["items_seen"])
            log.info(
                "sync of %s (%s) finished in %.2fs: %d seen, %d changed, %d removed, %d writes planned",
                name, mode, elapsed, counts["items_seen"], counts["items_changed"], counts["items_removed"],
                counts["writes_planned"], extra={"source": name, "run_id": run_id},
            )
        finally:
            correlation_id.reset(token)
        return SyncResult(run_id=run_id, status="succeeded", items_seen=counts["items_seen"],
                          items_changed=counts["items_changed"], items_removed=counts["items_removed"],
                          writes_planned=counts["writes_planned"])

    def _report(self, name: str, mode: str, status: str, seconds: float, items: int) -> None:
        if self._on_finished is not None:
            self._on_finished(name, mode, status, seconds, items)

    def _pull(self, name: str, source: SourceConfig, *, cursor: str | None, full: bool, run_id: int,
              counts: dict[str, int], progress: ProgressCallback | None) -> None:
        connector = self.connector(name)
        context = self.context(name, refresh=True)
        tool = tool_for(source.kind)
        profile = profile_for(source)
        for read_started, page, pages in prefetch(connector.pull(cursor, full=full)):
            items: list[BacklogItem] = []
            for raw in page.records:
                try:
                    items.append(tool.to_item(raw, source=name, profile=profile, context=context))
                except ValueError as exc:  # a record that cannot be an item at all (no id)
                    log.warning("skipped a %s record that cannot be mapped: %s", source.kind, exc)
            with session_scope(self.engine) as db:
                changed = upsert_items(db, name, items, read_started=read_started)
                removed = remove_items(db, name, page.deleted_ids)
                run = db.get(SyncRun, run_id)
                lease = {"lease_expires_at": utcnow() + timedelta(seconds=self.config.lease_seconds)}
                if page.cursor is not None:
                    lease.update(cursor=page.cursor, cursor_updated_at=utcnow())
                db.execute(update(SourceRow).where(SourceRow.name == name).values(**lease))
                counts["pages"] += pages
                counts["items_seen"] += len(items)
                counts["items_changed"] += changed
                counts["items_removed"] += removed
                counts["items_with_problems"] += sum(1 for i in items if i.problems)
                if run is not None:
                    for key in ("pages", "items_seen", "items_changed", "items_removed", "items_with_problems"):
                        setattr(run, key, counts[key])
            if progress is not None:
                progress(counts["items_seen"])

    def _reconcile(self, name: str, run_started: datetime) -> int:
        """Removes stored items the tool no longer has in scope (deleted, archived, moved out).

        Only items last stored before this run began can go: one a webhook stored meanwhile (created while a
        full read was under way, so missing from the ids that read saw) stays, and the next reconcile judges it."""
        present = set(self.connector(name).list_ids())  # read completely before deleting anything
        with session_scope(self.engine) as db:
            stored = set(db.execute(select(ItemRow.external_id).where(
                ItemRow.source == name, ItemRow.synced_at < run_started)).scalars())
            gone = sorted(stored - present)
            removed = remove_items(db, name, gone)
            db.execute(update(SourceRow).where(SourceRow.name == name)
                       .values(runs_since_reconcile=0, last_reconcile_at=utcnow()))
        if gone:
            log.info("reconcile of %s removed %d items no longer in scope", name, len(gone))
        return removed

    def _succeed(self, name: str, run_id: int, counts: dict[str, int], mode: str) -> None:
        with session_scope(self.engine) as db:
            state = db.get(SourceRow, name)
            run = db.get(SyncRun, run_id)
            assert state is not None and run is not None
            if state.consecutive_failures:
                log.info("sync of %s recovered after %d failed runs", name, state.consecutive_failures,
                         extra={"source": name, "event": "recovered"})
            state.state = SourceState.ACTIVE
            state.consecutive_failures = 0
            state.last_success_at = utcnow()
            if mode == "incremental":
                state.runs_since_reconcile += 1
            state.items_count = db.scalar(select(func.count()).where(ItemRow.source == name)) or 0
            run.status = "succeeded"
            run.finished_at = utcnow()
            for key, value in counts.items():
                setattr(run, key, value)

    def _fail(self, name: str, run_id: int, counts: dict[str, int], exc: Exception) -> SyncResult:
        if isinstance(exc, AuthError):
            new_state, reason = SourceState.NEEDS_CREDENTIALS, f"needs new credentials: {exc}"
            self.forget_connector(name)
        elif isinstance(exc, FatalError):
            new_state, reason = SourceState.PAUSED, f"paused: {exc}"
            self.forget_connector(name)
        elif isinstance(exc, RetriableError | ConnectorError):
            new_state, reason = SourceState.FAILING, str(exc)
        else:
            new_state, reason = SourceState.FAILING, f"{type(exc).__name__}: {exc}"
        with session_scope(self.engine) as db:
            state = db.get(SourceRow, name)
            run = db.get(SyncRun, run_id)
            assert state is not None and run is not None
            first_failure = state.consecutive_failures == 0
            state.state = new_state
            state.consecutive_failures += 1
            state.last_error = reason[:2000]
            state.last_error_at = utcnow()
            run.status = "failed"
            run.error = reason[:4000]
            run.finished_at = utcnow()
            for key, value in counts.items():
                setattr(run, key, value)
        if first_failure:
            log.error("sync of %s failed: %s", name, reason, extra={"source": name, "event": "failing"},
                      exc_info=not isinstance(exc, ConnectorError))
        else:
            log.debug("sync of %s failed again: %s", name, reason)
        return SyncResult(run_id=run_id, status="failed", error=reason, **{
            k: counts[k] for k in ("items_seen", "items_changed", "items_removed", "writes_planned")})


_DONE = object()


BATCH_RECORDS = 1000  # records stored per transaction: a tool's small pages (Asana's 100) are stored together
BATCH_SECONDS = 0.5  # ... but no page waits longer than this for the pages after it


def prefetch(pages: Iterator[Page], *, batch_records: int | None = None,
             batch_seconds: float | None = None) -> Iterator[tuple[datetime, Page, int]]:
    """Reads pages on a thread while the previous batch is mapped and stored (the tool's latency hides behind
    our work), and joins consecutive pages into batches of about `batch_records` records, so that a tool with
    small pages costs one transaction per thousand records rather than one per page.

    Yields (when the read of the batch's first page began, the batch as one Page, how many pages it joins).
    A batch is handed over once it holds `batch_records` records, right after a page that deleted ids (so
    that deletions apply in the tool's order: nothing read after them is stored before them), `batch_seconds`
    after its first page arrived if no more came meanwhile, and at the end. Its cursor is its last page's
    cursor that is not None. The reader runs ahead by at most `batch_records` records (plus the page it is
    reading), so memory stays at about two batches. An error of the reader is raised here, in order, after
    the batch of the pages read before it. The defaults are BATCH_RECORDS and BATCH_SECONDS."""
    limit = BATCH_RECORDS if batch_records is None else batch_records
    wait = BATCH_SECONDS if batch_seconds is None else batch_seconds
    handoff: queue.Queue[Any] = queue.Queue()
    buffered = threading.Condition()
    ahead = 0  # records read and not yet taken by the consumer (under `buffered`)
    stop = threading.Event()

    def put(started: datetime, page: Page) -> bool:
        nonlocal ahead
        with buffered:
            while ahead >= limit and not stop.is_set():
                buffered.wait(timeout=0.2)
            if stop.is_set():
                return False
            ahead += len(page.records)
        handoff.put((started, page))
        return True

    def read() -> None:
        try:
            while not stop.is_set():
                started = utcnow()
                page = next(pages, _DONE)
                if page is _DONE or not put(started, page):
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            handoff.put(exc)
            return
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        handoff.put(_DONE)

    def take(timeout: float | None) -> Any:
        nonlocal ahead
        entry = handoff.get(timeout=timeout)
        if isinstance(entry, tuple):
            with buffered:
                ahead -= len(entry[1].records)
                buffered.notify_all()
        return entry

    reader = threading.Thread(target=read, name="page-reader", daemon=True)
    reader.start()
    try:
        pending: BaseException | None = None
        finished = False
        while not finished and pending is None:
            entry = take(None)
            if entry is _DONE:
                return
            if isinstance(entry, BaseException):
                raise entry
            started, first = entry
            batch = Page(list(first.records), first.cursor, list(first.deleted_ids))
            joined = 1
            deadline = time.monotonic() + wait
            while len(batch.records) < limit and not batch.deleted_ids:
                try:
                    entry = take(max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break  # the next page is slow: store what came
                if entry is _DONE:
                    finished = True
                    break
                if isinstance(entry, BaseException):
                    pending = entry  # raised after the pages read before it are stored
                    break
                page = entry[1]
                batch.records.extend(page.records)
                batch.deleted_ids.extend(page.deleted_ids)
                if page.cursor is not None:
                    batch.cursor = page.cursor
                joined += 1
            yield started, batch, joined
        if pending is not None:
            raise pending
    finally:
        stop.set()
        with buffered:
            buffered.notify_all()
        reader.join(timeout=30)


def upsert_items(db: Any, source: str, items: list[BacklogItem], *, read_started: datetime | None = None) -> int:
    """Inserts or updates items by (source, external id); returns how many were new or changed.

    `read_started` is when the read of these records began (our clock). Where we wrote to an item after
    that, the record may predate our write: its values of our own fields are stale, and the stored ones
    (set when the write succeeded) are kept, so a read racing a write never causes the same write again.
    """
    if not items:
        return 0
    by_id = {item.external_id: item for item in items}  # a page listing an item twice keeps the last
    table = ItemRow.__table__
    # Only the columns the comparison reads: loading whole ORM rows (every JSON column decoded) and setting
    # their attributes one by one cost more than mapping the page.
    existing = {
        external_id: (row_id, content_hash, remote_values)
        for row_id, external_id, content_hash, remote_values in db.execute(
            select(table.c.id, table.c.external_id, table.c.content_hash, table.c.remote_values)
            .where(table.c.source == source, table.c.external_id.in_(list(by_id)))
        )
    }
    written_since: set[str] = set()
    if read_started is not None and existing:
        written_since = set(db.execute(
            select(WriteLogRow.external_id).where(
                WriteLogRow.source == source, WriteLogRow.external_id.in_(list(existing)),
                WriteLogRow.written_at >= read_started,
            ).distinct()
        ).scalars())
    changed = 0
    now = datetime.now(UTC)
    new_rows = []
    touched = []  # unchanged: only when it was seen and the tool's updated time
    rewritten = []
    for external_id, item in by_id.items():
        values = item_to_row_values(item)
        stored = existing.get(external_id)
        if stored is None:
            new_rows.append({"source": source, "external_id": external_id, "synced_at": now, "score_problems": [],
                             **values})
            continue
        row_id, content_hash, remote_values = stored
        if external_id in written_since:
            values["remote_values"] = {**values["remote_values"], **{
                field: value for field, value in (remote_values or {}).items() if field in OWNED_FIELDS}}
        if content_hash == values["content_hash"] and remote_values == values["remote_values"]:
            # The hash covers every other mapped value.
            touched.append({"row_id": row_id, "synced_at": now, "updated_at": values["updated_at"]})
            continue
        if content_hash != values["content_hash"]:
            changed += 1
        rewritten.append({"row_id": row_id, "synced_at": now, **values})
    by_row = table.c.id == bindparam("row_id")
    for batch in (touched, rewritten):
        if batch:
            batch.sort(key=lambda values: values["row_id"])  # rows locked in id order, as every writer does
            execute_many(db, update(table).where(by_row), batch)
    if new_rows:
        # Core inserts: building ORM objects for thousands of new items costs more than the rest of the page.
        execute_many(db, insert(table), new_rows)
    return changed + len(new_rows)


def remove_items(db: Any, source: str, external_ids: list[str]) -> int:
    """Deletes items (and their pending writes) that left the tool or the configured scope."""
    if not external_ids:
        return 0
    result = db.execute(delete(ItemRow).where(ItemRow.source == source, ItemRow.external_id.in_(external_ids)))
    db.execute(
        update(OutboxRow)
        .where(OutboxRow.source == source, OutboxRow.external_id.in_(external_ids), OutboxRow.status == "pending")
        .values(status="superseded", last_error="the item left the backlog")
    )
    return int(result.rowcount or 0)
