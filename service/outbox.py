"""The outbox worker: claims planned writes, sends them through the connectors (rate-limited, retried by the
connector's policy), and records what the tool now holds so the same value is never written twice."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, literal, or_, select, update
from sqlalchemy.engine import Engine

from connectors.base import AuthError, FatalError, RanksNatively, ReadsComments, RetriableError, SkippableError
from service.db import session_scope
from service.planning import same_value
from service.registry import profile_for, tool_for
from service.tables import ItemRow, OutboxRow, SourceRow, SourceState, WriteLogRow, utcnow

log = logging.getLogger("backlog_sync.outbox")

RECOVERED = "recovered:"
MAX_ATTEMPTS = 8
RECENT_COMMENTS = 20  # an interrupted comment is among an item's latest ones: these are compared
WORKER_ID = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class DrainResult:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    calls: int = 0
    errors: list[str] = field(default_factory=list)


def claim(engine: Engine, *, limit: int, claim_seconds: float, source: str | None = None) -> list[OutboxRow]:
    """Claims due pending writes (and writes whose claim expired) for this worker.

    The claim is a compare-and-set: the UPDATE repeats the due condition, so of two workers that read the same
    rows only the first to write gets them (SQLite reads outside the write lock; PostgreSQL also skips rows
    another transaction holds)."""
    now = utcnow()
    due = or_(
        (OutboxRow.status == "pending") & (OutboxRow.next_attempt_at <= now),
        (OutboxRow.status == "sending") & (OutboxRow.claimed_until < now),
    )
    token = claim_token()
    with session_scope(engine) as db:
        query = select(OutboxRow.id).where(due).order_by(OutboxRow.id).limit(limit)
        if source is not None:
            query = query.where(OutboxRow.source == source)
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(db.execute(query).scalars())
        if not ids:
            return []
        # SET reads the row as it was: a row still "sending" here had a worker that died (or stalled) mid-send.
        recovered = literal(f"{RECOVERED} the claim of ") + func.coalesce(OutboxRow.claimed_by, "?") + " expired"
        db.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(ids), due)
            .values(status="sending", claimed_by=token, claimed_until=now + timedelta(seconds=claim_seconds),
                    attempts=OutboxRow.attempts + 1,
                    last_error=case((OutboxRow.status == "sending", recovered), else_=OutboxRow.last_error))
            .execution_options(synchronize_session=False)
        )
        rows = list(db.execute(select(OutboxRow).where(OutboxRow.id.in_(ids), OutboxRow.claimed_by == token)
                               .order_by(OutboxRow.id)).scalars())
        return rows


def claim_token() -> str:
    """Identifies one claim (not just the process): a row taken over after its claim expired is told apart."""
    return f"{WORKER_ID[:55]}:{uuid.uuid4().hex[:8]}"


class OutboxWorker:
    """Drains the outbox through the connectors of a SyncService (which owns the connectors)."""

    def __init__(self, *, engine: Engine, sync_service: Any) -> None:
        self.engine = engine
        self.sync = sync_service

    def drain(self, *, limit: int = 100, source: str | None = None) -> DrainResult:
        """Sends claimed writes, one vendor call per item for its field writes; returns what happened."""
        result = DrainResult()
        waiting: dict[str, tuple[float, str]] = {}  # source -> (seconds the tool asked us to wait, why)
        while True:
            rows = claim(self.engine, limit=limit, source=source,
                         claim_seconds=self.sync.config.claim_seconds)
            if not rows:
                return result
            by_item: dict[tuple[str, str], list[OutboxRow]] = defaultdict(list)
            for row in rows:
                by_item[(row.source, row.external_id)].append(row)
            paused: set[str] = set()
            for (source_name, external_id), item_rows in by_item.items():
                if source_name in waiting:
                    self._release(item_rows, waiting[source_name][1], retry=True, wait=waiting[source_name][0])
                    result.deferred += len(item_rows)
                    continue
                if source_name in paused or self.sync.config.source(source_name) is None:
                    self._release(item_rows, "the source is paused or no longer configured", retry=True)
                    result.deferred += len(item_rows)
                    continue
                taken = self._take(item_rows)
                if taken is None:  # another worker is writing this item right now: after it, in order
                    result.deferred += len(item_rows)
                    continue
                if not taken:
                    continue  # superseded by a newer plan, or taken over by another worker
                item_rows = taken
                try:
                    self._send(source_name, external_id, item_rows)
                    result.calls += 1
                    result.sent += len(item_rows)
                except AuthError as exc:
                    paused.add(source_name)
                    self._pause_source(source_name, SourceState.NEEDS_CREDENTIALS, f"needs new credentials: {exc}")
                    self._release(item_rows, str(exc), retry=True)
                    result.deferred += len(item_rows)
                except RetriableError as exc:
                    if exc.retry_after is not None:
                        # The tool said how long to wait (a 429 the retry policy would not wait out): every write
                        # to this source waits that long, and the wait does not count against their attempts.
                        waiting[source_name] = (exc.retry_after, str(exc))
                        log.warning("writes to %s wait %.0fs, as the tool asked: %s", source_name, exc.retry_after,
                                    exc, extra={"source": source_name})
                    self._release(item_rows, str(exc), retry=True, wait=exc.retry_after)
                    result.deferred += len(item_rows)
                except (SkippableError, FatalError, ValueError, KeyError) as exc:
                    # One item's write failed for a reason of its own (e.g. field rejected): record it.
                    self._release(item_rows, str(exc), retry=False)
                    result.failed += len(item_rows)
                    result.errors.append(f"{source_name}/{external_id}: {exc}")
                    log.warning("write to %s %s failed: %s", source_name, external_id, exc)
            if len(rows) < limit:
                return result

    def _take(self, rows: list[OutboxRow]) -> list[OutboxRow] | None:
        """Right before sending: renews our claim, drops rows a newer plan superseded or another worker took
        over, and defers (None) when another worker is writing the same item, so writes land in plan order."""
        now = utcnow()
        claim_seconds = self.sync.config.claim_seconds
        first = rows[0]
        with session_scope(self.engine) as db:
            query = select(OutboxRow).where(OutboxRow.source == first.source,
                                            OutboxRow.external_id == first.external_id,
                                            OutboxRow.status.in_(("pending", "sending")))
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()
            current = {row.id: row for row in db.execute(query).scalars()}
            ours = [current[row.id] for row in rows
                    if row.id in current and current[row.id].status == "sending"
                    and current[row.id].claimed_by == row.claimed_by]
            busy = any(other.status == "sending" and other.claimed_by != first.claimed_by
                       and other.claimed_until is not None and other.claimed_until > now
                       for other in current.values())
            if busy:
                for row in ours:
                    row.status = "pending"
                    row.claimed_by = None
                    row.claimed_until = None
                    row.attempts = max(0, row.attempts - 1)  # waiting for another worker is not a failed attempt
                    row.next_attempt_at = now + timedelta(seconds=1)
                return None
            kept = []
            for row in ours:
                newer = any(other.id > row.id and other.field == row.field for other in current.values())
                if newer and row.field in ("score", "rank", "kpi_result"):
                    row.status = "superseded"
                    row.claimed_until = None
                    continue
                row.claimed_until = now + timedelta(seconds=claim_seconds)
                kept.append(row)
            db.flush()
            for row in kept:
                db.expunge(row)
            return kept

    def _send(self, source_name: str, external_id: str, rows: list[OutboxRow]) -> None:
        source = self.sync.source_config(source_name)
        tool = tool_for(source.kind)
        connector = self.sync.connector(source_name)
        context = self.sync.context(source_name)
        profile = profile_for(source)
        fields = {row.field: row.value for row in rows if row.field in ("score", "rank", "kpi_result")}
        comments = [row for row in rows if row.field == "comment"]
        native = [row for row in rows if row.field == "native_rank"]
        if fields and any((row.last_error or "").startswith(RECOVERED) for row in rows):
            # A worker died after claiming these: if the tool already holds the values, do not write twice.
            raws = connector.fetch([external_id])
            if raws:
                held = tool.to_item(raws[0], source=source_name, profile=profile, context=context).remote_values
                landed = {name: value for name, value in fields.items() if same_value(value, held.get(name))}
                if landed:
                    log.info("%s %s already holds %s from an interrupted write; not sending it again",
                             source_name, external_id, ", ".join(sorted(landed)))
                    fields = {name: value for name, value in fields.items() if name not in landed}
        if fields:
            with session_scope(self.engine) as db:
                item = db.execute(
                    select(ItemRow).where(ItemRow.source == source_name, ItemRow.external_id == external_id)
                ).scalar_one_or_none()
                extra = dict(item.extra) if item is not None else {}
            payload = tool.write_payload(fields, profile=profile, context=context, extra=extra)
            connector.update_item(external_id, payload)
        comments = self._comments_not_landed(connector, tool, external_id, comments)
        for row in comments:
            connector.add_comment(external_id, tool.mapping.comment_body(str(row.value), context=context))
        for row in native:
            if not isinstance(connector, RanksNatively):
                row.last_error = f"{source.kind} has no native ranking; nothing was sent"
                continue
            failures = connector.rank(list(row.value or []))
            if failures:
                # The board is ordered except for these issues (Jira's 207): say which, and why.
                row.last_error = f"{len(failures)} issue(s) not ranked: " + "; ".join(
                    f"{issue}: {why}" for issue, why in list(failures.items())[:50])
                log.warning("ranking the %s board left %d issue(s) out: %s", source_name, len(failures),
                            ", ".join(list(failures)[:10]))
        self._mark_sent(source_name, external_id, rows,
                        {row.field: row.value for row in rows if row.field in ("score", "rank", "kpi_result")})

    @staticmethod
    def _comments_not_landed(connector: Any, tool: Any, external_id: str, rows: list[OutboxRow]) -> list[OutboxRow]:
        """Drops comments an interrupted send already posted: a comment taken over from a dead worker is compared
        with the item's latest comments (ReadsComments), whitespace aside, before it is posted again."""
        recovered = [row for row in rows if (row.last_error or "").startswith(RECOVERED)]
        if not recovered or not isinstance(connector, ReadsComments):
            return rows  # a tool that cannot show its comments gets the comment again (at least once)
        bodies = connector.recent_comments(external_id, max(RECENT_COMMENTS, 2 * len(recovered)))
        held = [tool.mapping.comment_text(body).split() for body in bodies]
        landed: set[int | None] = set()
        for row in recovered:  # each comment the tool holds accounts for one row: two equal rows need two
            words = str(row.value).split()
            if words in held:
                held.remove(words)
                landed.add(row.id)
        if landed:
            log.info("%s already holds %d comment(s) from an interrupted write; not posting them again",
                     external_id, len(landed))
        return [row for row in rows if row.id not in landed]

    def _mark_sent(self, source_name: str, external_id: str, rows: list[OutboxRow], fields: dict[str, Any]) -> None:
        now = utcnow()
        with session_scope(self.engine) as db:
            for row in rows:
                stored = db.get(OutboxRow, row.id)
                if stored is not None and stored.claimed_by == row.claimed_by:
                    stored.status = "sent"
                    stored.sent_at = now
                    stored.claimed_until = None
                    stored.last_error = row.last_error
            if fields:
                item = db.execute(
                    select(ItemRow).where(ItemRow.source == source_name, ItemRow.external_id == external_id)
                ).scalar_one_or_none()
                if item is not None:
                    # The tool now holds these values: the next plan compares against them.
                    item.remote_values = {**(item.remote_values or {}), **fields}
                record_writes(db, source_name, external_id, fields)

    def _release(self, rows: list[OutboxRow], error: str, *, retry: bool, wait: float | None = None) -> None:
        """Gives claimed rows back: pending again after a back-off (or after `wait`, the tool's own Retry-After,
        which does not use up an attempt), or failed."""
        now = utcnow()
        with session_scope(self.engine) as db:
            for row in rows:
                stored = db.get(OutboxRow, row.id)
                if stored is None or stored.claimed_by != row.claimed_by:
                    continue  # another worker took it over after our claim expired
                stored.last_error = error[:2000]
                stored.claimed_until = None
                if retry and wait is not None:
                    stored.status = "pending"
                    stored.attempts = max(0, stored.attempts - 1)
                    stored.next_attempt_at = now + timedelta(seconds=wait)
                elif retry and stored.attempts < MAX_ATTEMPTS:
                    stored.status = "pending"
                    stored.next_attempt_at = now + timedelta(seconds=min(3600, 5 * 2 ** stored.attempts))
                else:
                    stored.status = "failed"

    def _pause_source(self, name: str, state: str, reason: str) -> None:
        with session_scope(self.engine) as db:
            row = db.get(SourceRow, name)
            if row is not None:
                if row.state != state:
                    log.error("writes to %s stopped: %s", name, reason, extra={"source": name})
                row.state = state
                row.last_error = reason[:2000]
                row.last_error_at = utcnow()
        self.sync.forget_connector(name)


def record_writes(db: Any, source: str, external_id: str, fields: dict[str, Any]) -> None:
    """Remembers the values we wrote (item, field, value, time), so their webhook echoes are recognised."""
    for name, value in fields.items():
        db.add(WriteLogRow(source=source, external_id=external_id, field=name, value=value))
