"""The webhook inbox: deliveries are verified, stored, acknowledged, then processed once by a worker.

A burst of events for one item inside the debounce window becomes one refresh of that item, and events
that only echo our own writes (same field, same value as the write log) cause no refresh and no write."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased

from connectors.base import AuthError, ConnectorError, WebhookEvent
from service.db import session_scope
from service.logs import correlation_id
from service.outbox import OutboxWorker, claim_token
from service.planning import plan_writes, same_value
from service.registry import owned_field_for, profile_for, tool_for
from service.scoring_job import rescore_source
from service.sync import SyncService, remove_items, upsert_items
from service.tables import InboxRow, WriteLogRow, utcnow

log = logging.getLogger("backlog_sync.inbox")

ECHO_WINDOW = timedelta(hours=6)  # how long a write of ours is remembered for echo detection


def delivery_key(delivery_id: str | None, body: bytes) -> str:
    """Uses the tool's delivery id when it sends one, else a hash of the body."""
    if delivery_id:
        return delivery_id[:200]
    return "sha256:" + hashlib.sha256(body).hexdigest()


def store_deliveries(engine: Engine, deliveries: list[tuple[str, str, bytes, str | None]]) -> list[bool]:
    """Persists verified deliveries (source, key, body, item id) in one transaction; True where newly stored.

    ON CONFLICT DO NOTHING keeps the same delivery from being stored twice, within the batch, across
    batches and across replicas.
    """
    table = InboxRow.__table__
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = utcnow()
    stored: set[tuple[str, str]] = set()
    seen: set[tuple[str, str]] = set()
    rows = []
    for source, key, body, item_id in deliveries:
        if (source, key) in seen:
            continue
        seen.add((source, key))
        rows.append({"source": source, "delivery_id": key, "body": body.decode("utf-8", "replace"),
                     "item_id": item_id[:128] if item_id else None, "received_at": now, "status": "pending",
                     "attempts": 0})
    with engine.begin() as connection:
        for chunk_start in range(0, len(rows), 500):
            chunk = rows[chunk_start:chunk_start + 500]
            statement = insert(table).values(chunk).on_conflict_do_nothing(
                index_elements=["source", "delivery_id"]).returning(table.c.source, table.c.delivery_id)
            stored.update((source, key) for source, key in connection.execute(statement))
    results = []
    reported: set[tuple[str, str]] = set()
    for source, key, _, _ in deliveries:
        fresh = (source, key) in stored and (source, key) not in reported
        reported.add((source, key))
        results.append(fresh)
    return results


class IntakeWriter:
    """Group commit for webhook intake: deliveries arriving together are inserted in one transaction, and each
    request is answered only once the transaction holding its delivery has committed (persist, then ack)."""

    def __init__(self, engine: Engine, *, max_batch: int = 256) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[
            tuple[str, str, bytes, str | None, asyncio.AbstractEventLoop, asyncio.Future[bool]] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def store(self, source: str, key: str, body: bytes, item_id: str | None = None) -> bool:
        """Stores one delivery; True if it is new, False if the same delivery was already stored."""
        self._ensure_running()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.put((source, key, body, item_id, loop, future))
        return await future

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-intake", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                results = store_deliveries(self.engine, [entry[:4] for entry in batch])
            except Exception as exc:  # the database refused: every request of the batch gets a 5xx, tools retry
                log.exception("storing %d webhook deliveries failed", len(batch))
                for *_, loop, future in batch:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                continue
            for (*_, loop, future), fresh in zip(batch, results, strict=True):
                loop.call_soon_threadsafe(_settle, future, fresh, None)


def _settle(future: asyncio.Future[bool], result: bool | None, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client went away); the delivery is stored all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(bool(result))


@dataclass
class InboxStats:
    processed: int = 0
    refreshed_items: int = 0
    echoes_ignored: int = 0
    removed_items: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)  # intake -> processed, seconds


class InboxWorker:
    """Claims due deliveries, refreshes the items they name, rescoring and writing back what changed."""

    def __init__(
        self,
        *,
        engine: Engine,
        sync_service: SyncService,
        outbox: OutboxWorker,
        debounce_seconds: float = 0.25,
        on_processed: Callable[[str, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.sync = sync_service
        self.outbox = outbox
        self.debounce = timedelta(seconds=debounce_seconds)
        self.wake = threading.Event()
        self.stats = InboxStats()
        self._on_processed = on_processed
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="inbox-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(timeout=1.0)
            self.wake.clear()
            if self._stop.is_set():
                return
            # Let the debounce window pass so a burst is handled as one refresh.
            time.sleep(self.debounce.total_seconds())
            try:
                while self.process_due() and not self._stop.is_set():
                    pass
            except Exception:  # a broken batch stays claimed and is retried when its claim expires
                log.exception("inbox processing failed")

    # -- processing ---------------------------------------------------------------------------------

    def claim(self, *, limit: int = 500) -> list[InboxRow]:
        """Claims due deliveries. An item's deliveries are due together once its burst has gone quiet for the
        debounce window (or has lasted 20 windows: a constant stream is still processed)."""
        now = utcnow()
        newer = aliased(InboxRow)
        still_bursting = (
            select(newer.id)
            .where(newer.source == InboxRow.source, newer.item_id == InboxRow.item_id,
                   newer.status == "pending", newer.received_at > now - self.debounce)
            .exists()
        )
        patience = max(self.debounce * 20, timedelta(seconds=1))
        unclaimed = InboxRow.claimed_until.is_(None) | (InboxRow.claimed_until < now)
        expired = (InboxRow.status == "processing") & (InboxRow.claimed_until < now)
        quiet = (InboxRow.received_at <= now - self.debounce) & (
            InboxRow.item_id.is_(None) | ~still_bursting | (InboxRow.received_at <= now - patience))
        with session_scope(self.engine) as db:
            query = (
                select(InboxRow.id)
                .where(or_((InboxRow.status == "pending") & unclaimed & quiet, expired))
                .order_by(InboxRow.id)
                .limit(limit)
            )
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=InboxRow)
            ids = list(db.execute(query).scalars())
            if not ids:
                return []
            # A compare-and-set: of two workers that read the same rows (SQLite reads outside the write lock),
            # only the first to write takes them. The burst terms need not be checked again: only a claim
            # changes whether a row is claimable.
            token = claim_token()
            db.execute(
                update(InboxRow)
                .where(InboxRow.id.in_(ids), or_((InboxRow.status == "pending") & unclaimed, expired))
                .values(status="processing", claimed_by=token,
                        claimed_until=now + timedelta(seconds=self.sync.config.claim_seconds),
                        attempts=InboxRow.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            return list(db.execute(select(InboxRow).where(InboxRow.id.in_(ids), InboxRow.claimed_by == token)
                                   .order_by(InboxRow.id)).scalars())

    def process_due(self) -> int:
        """Processes one batch of due deliveries; returns how many it handled."""
        rows = self.claim()
        if not rows:
            return 0
        by_source: dict[str, list[InboxRow]] = defaultdict(list)
        for row in rows:
            by_source[row.source].append(row)
        for source_name, source_rows in by_source.items():
            token = correlation_id.set(f"inbox-{source_name}-{uuid.uuid4().hex[:8]}")
            try:
                self._process_source(source_name, source_rows)
            finally:
                correlation_id.reset(token)
        return len(rows)

    def _process_source(self, source_name: str, rows: list[InboxRow]) -> None:
        source = self.sync.config.source(source_name)
        if source is None:
            self._finish(rows, "ignored", "the source is no longer configured")
            return
        try:
            connector = self.sync.connector(source_name)
            events: list[WebhookEvent] = []
            for row in rows:
                events.extend(connector.parse_webhook(row.body.encode("utf-8")))  # type: ignore[attr-defined]
            refresh, deleted, echoes = self._classify(source_name, events)
            refreshed = self._refresh(source_name, refresh) if refresh else 0
            removed = 0
            if deleted:
                with session_scope(self.engine) as db:
                    removed = remove_items(db, source_name, sorted(deleted))
            if refreshed or removed:
                rescore_source(self.engine, source)
                plan_writes(self.engine, source)
        except AuthError as exc:
            self._release(rows, f"needs new credentials: {exc}")
            return
        except ConnectorError as exc:
            self._release(rows, str(exc))
            return
        except OperationalError as exc:  # a deadlock or a lost connection: transient, try again
            log.warning("processing webhook deliveries of %s hit a database error; will retry: %s",
                        source_name, str(exc).splitlines()[0])
            self._release(rows, f"database: {str(exc).splitlines()[0]}")
            return
        except Exception as exc:  # malformed stored body or a mapping bug: keep the row, say why
            log.exception("processing webhook deliveries of %s failed", source_name)
            self._finish(rows, "failed", f"{type(exc).__name__}: {exc}")
            self.stats.failed += len(rows)
            return
        outcome = f"refreshed {len(refresh)}, removed {len(deleted)}, ignored {echoes} echoes of our writes"
        self._finish(rows, "done", outcome)
        self.stats.refreshed_items += len(refresh)
        self.stats.removed_items += len(deleted)
        self.stats.echoes_ignored += echoes
        if refreshed or removed:
            self.outbox.drain(source=source_name)

    def _classify(self, source_name: str, events: list[WebhookEvent]) -> tuple[set[str], set[str], int]:
        refresh: set[str] = set()
        deleted: set[str] = set()
        echoes = 0
        own = self._own_field_names(source_name)
        for event in events:
            if event.external_id is None:
                continue
            if event.deleted:
                deleted.add(event.external_id)
                refresh.discard(event.external_id)
                continue
            if event.external_id in deleted:
                continue
            if self._is_echo(source_name, event, own):
                echoes += 1
                continue
            refresh.add(event.external_id)
        return refresh, deleted, echoes

    def _own_field_names(self, source_name: str) -> dict[str, str]:
        """Maps every name or id the tool uses for our owned fields to the logical field."""
        source = self.sync.source_config(source_name)
        profile = profile_for(source)
        context = self.sync.context(source_name)
        return tool_for(source.kind).owned_field_names(profile=profile, context=context)

    def _is_echo(self, source_name: str, event: WebhookEvent, own: dict[str, str]) -> bool:
        """True when every change in the event is one of our fields set to a value we wrote."""
        if not event.changed_fields:
            return False
        logical = [owned_field_for(own, name) for name in event.changed_fields]
        if any(f is None for f in logical):
            return False  # at least one change is the user's
        since = utcnow() - ECHO_WINDOW
        with session_scope(self.engine) as db:
            written = list(db.execute(
                select(WriteLogRow.field, WriteLogRow.value).where(
                    WriteLogRow.source == source_name,
                    WriteLogRow.external_id == event.external_id,
                    WriteLogRow.written_at >= since,
                )
            ).all())
        if not written:
            return False
        for name, logical_field in zip(event.changed_fields, logical, strict=True):
            values = [value for f, value in written if f == logical_field]
            if not values:
                return False
            if name in event.changes and not any(same_value(v, event.changes[name]) for v in values):
                return False  # someone set our field to another value: treat it as a change to correct
        return True

    def _refresh(self, source_name: str, external_ids: set[str]) -> int:
        source = self.sync.source_config(source_name)
        connector = self.sync.connector(source_name)
        context = self.sync.context(source_name)
        tool = tool_for(source.kind)
        profile = profile_for(source)
        read_started = utcnow()
        raws = connector.fetch(sorted(external_ids))
        items = []
        for raw in raws:
            try:
                items.append(tool.to_item(raw, source=source_name, profile=profile, context=context))
            except ValueError as exc:
                log.warning("skipped a %s record that cannot be mapped: %s", source.kind, exc)
        found = {item.external_id for item in items}
        with session_scope(self.engine) as db:
            upsert_items(db, source_name, items, read_started=read_started)
            # fetch() leaves out items that no longer exist (or left the scope): they leave the backlog.
            remove_items(db, source_name, sorted(external_ids - found))
        return len(items) + len(external_ids - found)

    def _finish(self, rows: list[InboxRow], status: str, outcome: str) -> None:
        now = utcnow()
        with session_scope(self.engine) as db:
            for row in rows:
                stored = db.get(InboxRow, row.id)
                if stored is None:
                    continue
                stored.status = status
                stored.processed_at = now
                stored.claimed_until = None
                stored.outcome = outcome[:2000]
                latency = (now - stored.received_at).total_seconds()
                self.stats.latencies.append(latency)
                if self._on_processed is not None:
                    self._on_processed(stored.source, latency)
        self.stats.processed += len(rows)

    def _release(self, rows: list[InboxRow], reason: str) -> None:
        with session_scope(self.engine) as db:
            for row in rows:
                stored = db.get(InboxRow, row.id)
                if stored is None:
                    continue
                stored.status = "pending" if stored.attempts < 10 else "failed"
                # A pending row with a claim in the future is not due before then (back-off).
                stored.claimed_until = utcnow() + timedelta(seconds=min(600, 5 * 2 ** stored.attempts))
                stored.outcome = reason[:2000]
